"""mosrun's side: its entry points, exec in place, waiting in the queue, `native`, -I/-R, -S batches."""
