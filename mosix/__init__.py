"""User-space MOSIX: mosrun and the cluster behind it."""
