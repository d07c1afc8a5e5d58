"""The home side of the node agent: what a process's home node keeps.

The registry, the queue, deputies, checkpoints, migrations out, placement.
"""
