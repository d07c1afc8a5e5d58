"""The remote side of the node agent: hosting processes whose home is elsewhere (receiving, restoring, guest checkpoints)."""
