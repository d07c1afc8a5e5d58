"""What the kernel says about this node and its processes (/proc, /sys), for every part of the agent."""
