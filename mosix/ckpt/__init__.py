"""Checkpoint and recovery: image format, capture and restore."""
