"""The home side of the node agent: what a process's home node keeps (registry, queue, deputies, checkpoints, migrations out, placement)."""
