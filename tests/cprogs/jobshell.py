"""jobshell.py ARGV...: a shell's job control, no more, for the tests' terminals.

Runs ARGV as the foreground job of this terminal (a process group of its own,
given the terminal); when the job stops, prints "stopped SIG" and continues it
in the foreground (SIGCONT), as ``fg`` does; at its end prints "status N"
(N as subprocess gives it: negative for a death signal)."""

import contextlib
import os
import signal
import sys

signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # to give the terminal away and back
job = os.fork()
if job == 0:
    os.setpgid(0, 0)
    os.tcsetpgrp(0, os.getpgrp())
    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
    os.execvp(sys.argv[1], sys.argv[1:])
with contextlib.suppress(OSError):  # it did so itself, and may have executed already
    os.setpgid(job, job)
os.tcsetpgrp(0, job)
while True:
    _, status = os.waitpid(job, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        print(f"stopped {os.WSTOPSIG(status)}", flush=True)
        os.tcsetpgrp(0, job)
        os.killpg(job, signal.SIGCONT)
        continue
    os.tcsetpgrp(0, os.getpgrp())
    print(f"status {os.waitstatus_to_exitcode(status)}", flush=True)
    break
