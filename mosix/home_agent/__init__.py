"""The home side of the node agent: what a process's home node keeps.

The registry, deputies, checkpoints, migrations out, placement; the control socket
the queue (mosix.queue) answers through.
"""
