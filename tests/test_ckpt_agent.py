"""The agent's side of checkpoints that needs no capture: discovery ignores the frozen copy."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.cbuild import build_c

from mosix.sysinfo import proc_info

COPY_PROGRAM = r"""
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
/* A child made as the checkpointer makes its copy: clone with flags 0 (no exit signal). */
int main(void) {
    long child = syscall(SYS_clone, 0, 0, 0, 0, 0);
    if (child == 0) { pause(); return 0; }
    printf("%ld\n", child);
    fflush(stdout);
    char c;
    if (read(0, &c, 1) < 0) return 1;
    kill((pid_t)child, SIGKILL);
    return 0;
}
"""


def test_a_child_without_exit_signal_is_taken_for_the_checkpoint_copy(tmp_path: Path) -> None:
    exe = build_c(COPY_PROGRAM, tmp_path / "copy", "-O2")
    p = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        child = int(p.stdout.readline())
        assert proc_info.is_checkpoint_copy(child)
        assert not proc_info.is_checkpoint_copy(p.pid)  # an ordinary child (SIGCHLD)
    finally:
        p.communicate("x", timeout=30)
