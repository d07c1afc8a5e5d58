"""Checkpoint and recovery: the image format, its reader, and mosrun's -C -N -A -R -I -O."""
