"""mosrun's side: entry points, exec in place, the queue wait, `native`, -I/-R, -S batches."""
