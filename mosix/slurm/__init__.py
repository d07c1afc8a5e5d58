"""MOSIX inside a Slurm allocation: the allocated nodes as the job's own cluster.

``mosix-slurm run CMD`` (the job script's one line) starts an agent on every
allocated node through ``srun`` and runs CMD with the job's mosruns pointed at
them; on Slurm's warning signal it checkpoints every process of the job and
requeues it; ``mosix-slurm mosrun NAME ...`` starts a program, or resumes it
from its last checkpoint when Slurm runs the job again.  See docs/SLURM.md.
"""
