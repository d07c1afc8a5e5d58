"""What the kernel says about this node and its processes (/proc, /sys)."""
