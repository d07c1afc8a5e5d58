"""A migrated process runs as its own user where it goes, never as the agent (root).

In a real 3-node test cluster an unprivileged user's program is started on node 2
(``mosrun -rnode2``): its copy there, and the supervisor that serves it, have
the user's ids and groups; so on node 3 and back home; it runs to its end as at home.
"""

from __future__ import annotations

import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clusters import migrate, node_programs
from support.users import users_fixture
from test_migration_faults import copy_pid

from mosix.testcluster import LocalCluster

TIMEOUT = 120
PRIVATE = "/tmp/guest-private"  # -X
users = users_fixture(("mosixguest1", "mosixguest2"))


@pytest.fixture(scope="module")
def migrant() -> Iterator[str]:
    with node_programs("guestid", {"migrant": ["-O0", "migrant.c"]}) as directory:
        directory.chmod(0o755)
        yield str(directory / "migrant")


def ids(pid: int) -> tuple[str, str]:
    """The Uid: and Gid: lines' values of /proc/PID/status."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = next(line for line in lines if line.startswith("Uid:")).split(maxsplit=1)[1]
    gid = next(line for line in lines if line.startswith("Gid:")).split(maxsplit=1)[1]
    return uid, gid


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("options", [[], [f"-X{PRIVATE}"]], ids=["plain", "X"])
def test_a_users_process_runs_as_that_user_where_it_migrates(
    cluster3: LocalCluster, migrant: str, users: tuple[str, str], options: list[str]
) -> None:
    user = users[0]
    entry = pwd.getpwnam(user)
    out = "/tmp/guest-identity.out"
    for k in (1, 2, 3):  # -X's directory exists on every node it goes to
        private = cluster3.node_path(k, PRIVATE)
        private.mkdir(exist_ok=True)
        private.chmod(0o1777)
    argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
    proc = cluster3.popen(
        1,
        [*argv, "mosrun", *options, "-rnode2", migrant, out, "5"],
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        copy = copy_pid(cluster3, 2, proc.pid)  # it waits for its line: running there
        mine = ("\t".join([str(entry.pw_uid)] * 4), "\t".join([str(entry.pw_gid)] * 4))
        assert ids(copy) == mine
        assert ids(parent(copy)) == mine  # mosix-remote, its supervisor
        moved = migrate(cluster3, proc.pid, "3")  # on, from its read of the home's stdin
        assert moved.returncode == 0, moved.stderr
        assert ids(copy_pid(cluster3, 3, proc.pid)) == mine
        back = migrate(cluster3, proc.pid, "home")
        assert back.returncode == 0, back.stderr
        assert ids(proc.pid) == mine  # restored at home in place: the user's still
        stdout, stderr = proc.communicate("hello\n", timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 5, stderr
    assert stdout.startswith(f"got hello pid {proc.pid} sum ")
    assert cluster3.node_path(1, out).read_text().startswith("hello ")
