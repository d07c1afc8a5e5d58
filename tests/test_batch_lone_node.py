"""Batch jobs (mosrun -E/-M) on a node without a cluster (the embedded one-node default).

The manual sends batch jobs "to other nodes of the local cluster-partition"; a lone
node's partition is itself, so the job runs here, as a MOSIX user expects of
``mosrun -E`` (the manual's way to run a program the discipline refuses): -E natively
(no seccomp filter), -M under the discipline, with /cwd, the exit status and death
signal passed through exactly; a placement naming another node is one line and 125.
A real agent (support/agents.py), real programs.
"""

from __future__ import annotations

import signal

from support.agents import Agent


def test_E_runs_natively_on_the_only_node(agent: Agent) -> None:
    probe = agent.run("mosrun", "-E", "sh", "-c", "grep ^Seccomp: /proc/self/status; exit 3")
    assert (probe.returncode, probe.stdout.split(), probe.stderr) == (3, ["Seccomp:", "0"], "")
    refused_under_mosrun = agent.run("mosrun", "-E", "setarch", "x86_64", "echo", "ran")
    assert (refused_under_mosrun.returncode, refused_under_mosrun.stdout) == (0, "ran\n")
    killed = agent.run("mosrun", "-E", "-b", "sh", "-c", "kill -TERM $$")
    assert killed.returncode == -signal.SIGTERM
    fed = agent.run("mosrun", "-E", "-i", "tr", "a-z", "A-Z", input="batch\n")
    assert fed.stdout == "BATCH\n", fed.stderr


def test_M_runs_under_the_discipline_on_the_only_node(agent: Agent) -> None:
    probe = agent.run("mosrun", "-M", "sh", "-c", "grep ^Seccomp: /proc/self/status; exit 4")
    assert (probe.returncode, probe.stdout.split()) == (4, ["Seccomp:", "2"]), probe.stderr
    refused = agent.run("mosrun", "-M", "setarch", "x86_64", "echo", "ran")
    assert refused.returncode != 0 and "ran" not in refused.stdout
    assert "personality" in refused.stderr


def test_cwd_on_the_only_node(agent: Agent) -> None:
    native = agent.run("mosrun", "-E/usr/bin", "pwd", cwd="/var/tmp")
    assert native.stdout == "/usr/bin\n", native.stderr
    mosix = agent.run("mosrun", "-M/usr", "pwd", cwd="/var/tmp")
    assert mosix.stdout == "/usr\n", mosix.stderr
    missing = agent.run("mosrun", "-E/no/such/dir", "pwd")
    assert missing.returncode == 125 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "directory" in missing.stderr


def test_another_node_is_one_line_and_125(agent: Agent) -> None:
    for kind in ("-E", "-M"):
        done = agent.run("mosrun", kind, "-2", "true")
        assert done.returncode == 125, done.stderr
        assert done.stderr.count("\n") == 1 and "no cluster" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    missing = agent.run("mosrun", "-E", "no-such-program-here")
    assert missing.returncode == 127, missing.stderr
