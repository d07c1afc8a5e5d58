"""mosrun -X{/dir}: private temporary directories, as the manual's PRIVATE TEMPORARY
FILES says.  Real agent, real mosrun (launcher, guard, filters), real programs.

What the tree of a mosrun with -X writes there is seen by no other process (a
tmpfs in a mount namespace of the tree's own), holds only regular files
(mkdir, symlink, link and mknod of special files fail with EPERM; a rename or
link from elsewhere with EXDEV) and is gone when the tree ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import ckpt_images as ci
import pytest
from support.agents import Agent
from support.clusters import migrate, mosrun_at_home, moved, where
from test_migration_faults import copy_pid

from mosix.ckpt import format as fmt
from mosix.ckpt.image import ImageError, read_head, read_head_from
from mosix.testcluster import LocalCluster

SECRET = "private bytes\n"
# A program that writes a file in the private directory D, says so, waits for a
# line on stdin and then prints the file back.
WRITE_WAIT_READ = (
    "import os, sys\n"
    "d = sys.argv[1]\n"
    "with open(os.path.join(d, 'f'), 'w') as f:\n"
    f"    f.write({SECRET!r})\n"
    "print('written', flush=True)\n"
    "sys.stdin.readline()\n"
    "print(open(os.path.join(d, 'f')).read(), end='', flush=True)\n"
)
# Each call that would make something other than a regular file, and its errno.
MAKERS = (
    "import errno, os, sys\n"
    "d = sys.argv[1]\n"
    "open(os.path.join(d, 'f'), 'w').close()\n"
    "def says(what, call, *args):\n"
    "    try:\n"
    "        call(*args)\n"
    "        print(what, 'ok')\n"
    "    except OSError as e:\n"
    "        print(what, errno.errorcode[e.errno])\n"
    "says('mkdir', os.mkdir, os.path.join(d, 'sub'))\n"
    "os.chdir(d)\n"
    "says('mkdir-relative', os.mkdir, 'sub')\n"
    "says('mkdirat', lambda: os.mkdir('sub', dir_fd=os.open('.', os.O_RDONLY)))\n"
    "says('symlink', os.symlink, 'f', os.path.join(d, 'link'))\n"
    "says('link', os.link, os.path.join(d, 'f'), os.path.join(d, 'hard'))\n"
    "says('mkfifo', os.mkfifo, os.path.join(d, 'fifo'))\n"
    "says('mknod-regular', os.mknod, os.path.join(d, 'plain'))\n"
    "says('rename-in', os.rename, sys.argv[2], os.path.join(d, 'moved'))\n"
    "says('mkdir-elsewhere', os.mkdir, sys.argv[3])\n"
    "print(sorted(os.listdir(d)))\n"
)
# Writes a MiB of random bytes in D, prints their digest, then prints the
# file's digest again for each line on stdin.
WRITE_THEN_DIGESTS = (
    "import hashlib, os, sys\n"
    "p = os.path.join(sys.argv[1], 'data')\n"
    "data = os.urandom(1 << 20)\n"
    "with open(p, 'wb') as f:\n"
    "    f.write(data)\n"
    "print(hashlib.sha256(data).hexdigest(), flush=True)\n"
    "for _ in sys.stdin:\n"
    "    with open(p, 'rb') as f:\n"
    "        print(hashlib.sha256(f.read()).hexdigest(), flush=True)\n"
)


def python(code: str) -> list[str]:
    return [sys.executable, "-P", "-c", code]


@pytest.fixture
def private(agent: Agent) -> Path:
    """An empty directory every test user may write in (as /tmp)."""
    d = agent.run_dir.parent / "private"
    d.mkdir()
    d.chmod(0o1777)
    return d


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("-Xrelative", "-X: directory must start with '/'"),
        ("-X/tmp/../etc", "-X: directory cannot include '..'"),
        ("-X/etc/mosix", "-X: directory cannot be within /etc"),
        ("-X/proc", "-X: directory cannot be within /proc"),
        ("-X/sys/x", "-X: directory cannot be within /sys"),
        ("-X/dev/shm", "-X: directory cannot be within /dev"),
        ("-X/" + "a" * 256, "-X: directory is longer than 256 characters"),
        ("-X/nonexistent/mosix", "-X: /nonexistent/mosix: No such file or directory"),
        ("-X/bin/sh", "-X: /bin/sh: Not a directory"),
    ],
)
def test_rule_violations_are_one_line_with_status_125(
    agent: Agent, private: Path, option: str, message: str
) -> None:
    marker = private / "ran"
    result = agent.run("mosrun", option, "touch", str(marker))
    assert (result.returncode, result.stdout) == (125, "")
    assert result.stderr == f"mosrun: {message}\n"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-M"], "-X: not available with -E/-M yet"),
        (["-E"], "-X: not available with -E/-M yet"),
        # the image's own directories are recovered
        (["-R/nonexistent.img"], "-X{}: program options are not permitted with -R"),
    ],
)
def test_combinations_not_built_are_refused(
    agent: Agent, private: Path, options: list[str], message: str
) -> None:
    result = agent.run("mosrun", *options, f"-X{private}", "true")
    assert (result.returncode, result.stdout) == (125, "")
    assert result.stderr.startswith(f"mosrun: {message.format(private)}")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("as_user", [None, "mosixtest1"])
def test_a_current_directory_that_is_private_is_the_private_one(
    agent: Agent, private: Path, two_users: tuple[str, str], as_user: str | None
) -> None:
    # started in it: relative names are its private files, not the node's directory's
    code = "import os\nopen('y', 'w').write('x')\nprint(os.listdir('.'), os.listdir(os.getcwd()))\n"
    result = agent.run("mosrun", f"-X{private}", *python(code), cwd=private, user=as_user)
    assert (result.returncode, result.stdout) == (0, "['y'] ['y']\n"), result.stderr
    assert os.listdir(private) == []


def test_more_than_ten_directories_are_refused(agent: Agent, private: Path) -> None:
    dirs = [f"-X{private}/{k}" for k in range(11)]
    result = agent.run("mosrun", *dirs, "true")
    assert (result.returncode, result.stderr) == (
        125,
        "mosrun: -X: at most 10 private directories\n",
    )


@pytest.mark.parametrize("as_user", [None, "mosixtest1"])
def test_files_are_invisible_to_other_processes_and_gone_after_exit(
    agent: Agent, private: Path, two_users: tuple[str, str], as_user: str | None
) -> None:
    p = agent.spawn(
        "mosrun",
        f"-X{private}",
        *python(WRITE_WAIT_READ),
        str(private),
        user=as_user,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdout is not None
    assert p.stdout.readline() == "written\n", p.stderr.read() if p.stderr else ""
    # another process, the program's own user's, sees the real directory: empty
    seen = agent.run("ls", "-A", str(private), user=as_user)
    assert (seen.returncode, seen.stdout) == (0, ""), seen.stderr
    assert os.listdir(private) == []
    out, err = p.communicate("go\n", timeout=60)
    assert (p.returncode, out, err) == (0, SECRET, "")
    assert os.listdir(private) == []


@pytest.mark.parametrize("as_user", [None, "mosixtest1"])
def test_only_regular_files_live_there(
    agent: Agent, private: Path, two_users: tuple[str, str], as_user: str | None
) -> None:
    outside = agent.run_dir.parent / "outside"
    outside.mkdir()
    outside.chmod(0o1777)
    source = outside / "source"
    source.write_text("x")
    source.chmod(0o666)
    result = agent.run(
        "mosrun",
        f"-X{private}",
        *python(MAKERS),
        str(private),
        str(source),
        str(outside / "newdir"),
        user=as_user,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "mkdir EPERM",
        "mkdir-relative EPERM",
        "mkdirat EPERM",
        "symlink EPERM",
        "link EPERM",
        "mkfifo EPERM",
        "mknod-regular ok",
        "rename-in EXDEV",
        "mkdir-elsewhere ok",
        "['f', 'plain']",
    ]
    assert (outside / "newdir").is_dir()
    assert source.read_text() == "x"
    assert os.listdir(private) == []


@pytest.mark.parametrize("as_user", [None, "mosixtest1"])
def test_files_survive_a_checkpoint_a_kill_and_recovery(
    agent: Agent, private: Path, two_users: tuple[str, str], as_user: str | None
) -> None:
    work = agent.run_dir.parent / "work"
    work.mkdir()
    work.chmod(0o1777)
    p = agent.spawn(
        "mosrun",
        f"-X{private}",
        *python(WRITE_THEN_DIGESTS),
        str(private),
        user=as_user,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=work,
    )
    assert p.stdout is not None
    written = p.stdout.readline()
    assert len(written) == 65
    done = agent.run("migrate", str(p.pid), "checkpoint", cwd=work, user=as_user)
    assert done.returncode == 0, done.stderr
    p.kill()
    p.wait()
    assert os.listdir(private) == []
    ckpt = work / f"ckpt.{p.pid}.1"
    head = read_head_from(str(ckpt))
    assert head.private_dirs == [str(private)]
    assert [(f.name, len(f.data)) for f in head.private_files] == [("data", 1 << 20)]

    r = agent.spawn(
        "mosrun",
        f"-R{ckpt}",
        user=as_user,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd="/",
    )
    assert r.stdin is not None and r.stdout is not None
    r.stdin.write("again\n")
    r.stdin.flush()
    assert r.stdout.readline() == written
    assert os.listdir(private) == []  # private to the recovered process too
    r.stdin.close()
    assert r.wait(timeout=60) == 0
    assert os.listdir(private) == []


def test_a_moved_process_keeps_its_private_files_and_other_nodes_keep_nothing(
    cluster3: LocalCluster,
) -> None:
    d = "/tmp/private-x"
    for node in (1, 2):
        cluster3.node_path(node, d).mkdir()
    argv = [f"-X{d}", "-C/tmp/private-x.ckpt", *python(WRITE_THEN_DIGESTS), d]
    with mosrun_at_home(cluster3, argv) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        written = proc.stdout.readline()
        assert len(written) == 65, proc.stderr.read() if proc.stderr else ""

        def digest_at(node: str, shown: str) -> None:
            moved(cluster3, proc, node)
            assert where(cluster3, proc.pid) == shown
            proc.stdin.write("again\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            assert proc.stdout.readline() == written  # type: ignore[union-attr]

        digest_at("2", "node2")
        assert os.listdir(cluster3.node_path(1, d)) == []  # still private while away
        # a checkpoint taken away holds them too
        done = cluster3.run(1, ["migrate", str(proc.pid), "checkpoint"], capture_output=True)
        assert done.returncode == 0, done.stderr
        head = read_head_from(str(cluster3.node_path(1, "/tmp/private-x.ckpt.1")))
        assert head.private_dirs == [d]
        assert [f.name for f in head.private_files] == ["data"]
        assert hashlib.sha256(head.private_files[0].data).hexdigest() + "\n" == written
        digest_at("home", "home")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    for node in (1, 2):
        assert os.listdir(cluster3.node_path(node, d)) == []


# A program that writes a private file at home, then appends each line of stdin
# to it and prints the file's digest.
APPEND_EACH_LINE = (
    "import hashlib, os, sys\n"
    "p = os.path.join(sys.argv[1], 'data')\n"
    "with open(p, 'wb') as f:\n"
    "    f.write(b'written at home\\n')\n"
    "print('written', flush=True)\n"
    "for line in sys.stdin:\n"
    "    with open(p, 'ab') as f:\n"
    "        f.write(line.encode())\n"
    "    with open(p, 'rb') as f:\n"
    "        print(hashlib.sha256(f.read()).hexdigest(), flush=True)\n"
)


def private_listing(pid: int, d: str) -> dict[str, bytes]:
    """The files of the private directory ``d`` as process ``pid`` sees them (its
    mount namespace, through /proc/PID/root; the tests' processes share one pid
    namespace)."""
    seen = Path(f"/proc/{pid}/root{d}")
    return {name: (seen / name).read_bytes() for name in sorted(os.listdir(seen))}


def test_private_files_live_where_the_process_runs_and_travel_with_it(
    cluster3: LocalCluster,
) -> None:
    d = "/tmp/private-travel"
    for node in (1, 2, 3):
        cluster3.node_path(node, d).mkdir()
    content = b"written at home\n"
    with mosrun_at_home(cluster3, [f"-X{d}", *python(APPEND_EACH_LINE), d]) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline() == "written\n", proc.stderr.read() if proc.stderr else ""
        assert private_listing(proc.pid, d) == {"data": content}

        def append_at(node: str, k: int) -> None:
            nonlocal content
            moved(cluster3, proc, node)
            line = f"appended at {node}\n"
            content += line.encode()
            proc.stdin.write(line)  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            digest = proc.stdout.readline()  # type: ignore[union-attr]
            assert digest == hashlib.sha256(content).hexdigest() + "\n"
            if k == 1:
                return
            # served where it runs: the file is in the copy's own namespace there,
            # and home's directory is empty while it is away
            assert private_listing(copy_pid(cluster3, k, proc.pid), d) == {"data": content}
            assert private_listing(proc.pid, d) == {}

        append_at("2", 2)
        append_at("3", 3)
        for node in (2, 3):  # the copies that left keep nothing
            assert os.listdir(cluster3.node_path(node, d)) == []
        append_at("home", 1)
        assert private_listing(proc.pid, d) == {"data": content}  # back home, byte-identical
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    for node in (1, 2, 3):
        assert os.listdir(cluster3.node_path(node, d)) == []


# A program that works on a private file at home and away, one step per line on
# stdin: it keeps a private file open (a move is refused meanwhile), closes it;
# then (away) opens it and prints the descriptor, then makes the calls the
# manual's rules decide and prints what each gave.
ON_NODE_2 = (
    "import errno, os, sys\n"
    "d, outside = sys.argv[1], sys.argv[2]\n"
    "p = os.path.join(d, 'f')\n"
    "os.umask(0o027)\n"
    "kept = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)\n"
    "os.write(kept, b'home\\n')\n"
    "print('open', flush=True)\n"
    "sys.stdin.readline()\n"
    "os.close(kept)\n"
    "print('closed', flush=True)\n"
    "sys.stdin.readline()\n"
    "fd = os.open(p, os.O_RDWR | os.O_APPEND)\n"
    "os.write(fd, b'away\\n')\n"
    "print(fd, flush=True)\n"
    "sys.stdin.readline()\n"
    "def says(what, call, *args):\n"
    "    try:\n"
    "        print(what, call(*args))\n"
    "    except OSError as e:\n"
    "        print(what, errno.errorcode[e.errno])\n"
    "says('mkdir', os.mkdir, os.path.join(d, 'sub'))\n"
    "says('symlink', os.symlink, 'f', os.path.join(d, 'l'))\n"
    "says('rename-within', os.rename, p, os.path.join(d, 'g'))\n"
    "says('rename-out', os.rename, os.path.join(d, 'g'), outside)\n"
    "says('listdir', lambda: sorted(os.listdir(d)))\n"
    "says('stat', lambda: os.stat(os.path.join(d, 'g')).st_size)\n"
    "says('pread', os.pread, fd, 100, 0)\n"
    "def dup_read():\n"
    "    g = os.dup(fd)\n"
    "    try:\n"
    "        return os.pread(g, 4, 0), os.get_inheritable(g)\n"
    "    finally:\n"
    "        os.close(g)\n"
    "says('dup', dup_read)\n"
    "says('dup2', os.dup2, fd, 9)\n"
    "says('fork', os.fork)\n"
    "says('close', os.close, fd)\n"
    "open(os.path.join(d, 'e'), 'w').close()\n"
    "os.umask(0o077)\n"
    "open(os.path.join(d, 'h'), 'w').write('made away\\n')\n"
    "says('modes', lambda: [oct(os.stat(os.path.join(d, n)).st_mode & 0o777) for n in 'eh'])\n"
    "os.unlink(os.path.join(d, 'e'))\n"
    "says('unlink', os.unlink, os.path.join(d, 'g'))\n"
    "print(sorted(os.listdir(d)), flush=True)\n"
    "sys.stdin.readline()\n"
    "print(open(os.path.join(d, 'h')).read(), end='', flush=True)\n"
)


@contextlib.contextmanager
def killed_after(proc: subprocess.Popen[str], seconds: float) -> Iterator[None]:
    """Kill ``proc`` if the block takes longer: a read of its output then ends (no
    hang when a call never returns)."""
    timer = threading.Timer(seconds, proc.kill)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def descriptors_into(pid: int, d: str) -> list[str]:
    """The targets in ``d`` of process ``pid``'s descriptors."""
    fds = Path(f"/proc/{pid}/fd")
    return [t for t in (os.readlink(fds / n) for n in os.listdir(fds)) if t.startswith(d + "/")]


def test_calls_on_private_files_away_are_served_there(cluster3: LocalCluster) -> None:
    d = "/tmp/private-calls"
    for node in (1, 2):
        cluster3.node_path(node, d).mkdir()
    outside = "/tmp/private-calls-outside"
    argv = [f"-X{d}", *python(ON_NODE_2), d, outside]
    with mosrun_at_home(cluster3, argv) as proc, killed_after(proc, 120):
        assert proc.stdin is not None and proc.stdout is not None

        def step(line: str = "go\n") -> str:
            proc.stdin.write(line)  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            return proc.stdout.readline()  # type: ignore[union-attr]

        assert proc.stdout.readline() == "open\n", proc.stderr.read() if proc.stderr else ""
        # a descriptor of a private file would not move with it: the move is refused
        refused = migrate(cluster3, proc.pid, "2")
        assert refused.returncode != 0
        assert refused.stderr.count("\n") == 1
        assert f"it has a file of its private directory {d} open (descriptor" in refused.stderr
        assert where(cluster3, proc.pid) == "home"
        assert step() == "closed\n"
        moved(cluster3, proc, "2")
        fd = int(step())
        copy = copy_pid(cluster3, 2, proc.pid)
        # the descriptor is the copy's own, of the file in its namespace on node 2;
        # the deputy at home has none into the directory, whose files left home
        assert os.readlink(f"/proc/{copy}/fd/{fd}") == f"{d}/f"
        assert descriptors_into(proc.pid, d) == []
        assert private_listing(proc.pid, d) == {}
        assert private_listing(copy, d) == {"f": b"home\naway\n"}
        # a move while it is open is refused there too
        refused = migrate(cluster3, proc.pid, "home")
        assert refused.returncode != 0
        assert refused.stderr.count("\n") == 1
        assert f"it has a file of its private directory {d} open" in refused.stderr
        assert where(cluster3, proc.pid) == "node2"
        said = [step(), *(proc.stdout.readline() for _ in range(12))]
        assert said == [
            "mkdir EPERM\n",
            "symlink EPERM\n",
            "rename-within None\n",
            "rename-out EXDEV\n",
            "listdir ['g']\n",
            "stat 10\n",
            "pread b'home\\naway\\n'\n",
            "dup (b'home', False)\n",
            "dup2 EXDEV\n",
            "fork EAGAIN\n",  # it cannot come home while the file is open
            "close None\n",
            "modes ['0o640', '0o600']\n",  # the program's umask, from home and set away
            "unlink None\n",
        ]
        assert proc.stdout.readline() == "['h']\n"
        assert private_listing(copy, d) == {"h": b"made away\n"}
        moved(cluster3, proc, "home")
        assert step() == "made away\n"
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    for node in (1, 2):
        assert os.listdir(cluster3.node_path(node, d)) == []
    assert not cluster3.node_path(1, outside).exists()


def test_a_move_to_a_node_without_the_directory_is_refused_and_it_stays_home(
    cluster3: LocalCluster,
) -> None:
    d = "/tmp/private-missing"
    cluster3.node_path(1, d).mkdir()  # node 2 has no such directory
    with mosrun_at_home(cluster3, [f"-X{d}", *python(WRITE_THEN_DIGESTS), d]) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        written = proc.stdout.readline()
        assert len(written) == 65, proc.stderr.read() if proc.stderr else ""
        refused = migrate(cluster3, proc.pid, "2")
        assert refused.returncode != 0
        assert refused.stderr.count("\n") == 1
        assert f"-X {d}: No such file or directory" in refused.stderr
        assert where(cluster3, proc.pid) == "home"
        proc.stdin.write("again\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == written  # its files are still there, at home
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    assert os.listdir(cluster3.node_path(1, d)) == []


def private_record(
    kind: fmt.PrivateKind, path: bytes, data: bytes = b"", mode: int = 0o100600
) -> bytes:
    head = fmt.PRIVATE.pack(kind=kind, mode=mode, path_len=len(path), pad=0, size=len(data))
    return head + path + data


def head_image(*privates: bytes) -> bytes:
    """An image's head with ``privates`` as its PRIVATE records (what follows REGS
    does not matter to the head reader)."""
    records = [
        (fmt.Kind.PROCESS, bytes(fmt.PROCESS.size)),
        (fmt.Kind.OPTIONS, b""),
        (fmt.Kind.CWD, b"/"),
        *((fmt.Kind.PRIVATE, p) for p in privates),
        (fmt.Kind.REGS, bytes(fmt.REGS.size)),
    ]
    return ci.encode_records(records)


DIR, FILE, MORE = fmt.PrivateKind.DIRECTORY, fmt.PrivateKind.FILE, fmt.PrivateKind.MORE


def test_the_head_reader_takes_private_records() -> None:
    head = read_head(
        io.BytesIO(head_image(private_record(DIR, b"/scratch"), private_record(FILE, b"f", b"xy")))
    )
    assert head.private_dirs == ["/scratch"]
    assert [(f.directory, f.name, f.data) for f in head.private_files] == [(0, "f", b"xy")]


def test_the_head_reader_joins_a_files_parts() -> None:
    head = read_head(
        io.BytesIO(
            head_image(
                private_record(DIR, b"/scratch"),
                private_record(FILE, b"f", b"ab"),
                private_record(MORE, b"f", b"cd"),
                private_record(MORE, b"f", b"e"),
                private_record(FILE, b"g", b"x"),
            )
        )
    )
    assert [(f.name, f.data) for f in head.private_files] == [("f", b"abcde"), ("g", b"x")]


@pytest.mark.parametrize(
    "privates",
    [
        [private_record(FILE, b"f", b"x")],  # a file before any directory
        [private_record(DIR, b"/etc/x")],  # against the -X rules
        [private_record(DIR, b"/a/../b")],
        [private_record(DIR, b"relative")],
        [private_record(DIR, b"/a"), private_record(DIR, b"/a")],
        [private_record(DIR, b"/a"), private_record(FILE, b"../x", b"")],
        [private_record(DIR, b"/a"), private_record(FILE, b"sub/x", b"")],
        [private_record(DIR, b"/a"), private_record(FILE, b"..", b"")],
        [private_record(DIR, b"/a"), private_record(FILE, b"l", b"", mode=0o120777)],  # a symlink
        [private_record(DIR, b"/a"), private_record(FILE, b"d", b"", mode=0o040755)],  # a directory
        [private_record(DIR, b"/a")[:-1]],  # lengths that do not add up
        [private_record(DIR, b"/a"), private_record(MORE, b"f", b"x")],  # a part of no file
        [private_record(DIR, b"/a"), private_record(FILE, b"f"), private_record(MORE, b"g")],
        [
            private_record(DIR, b"/a"),
            private_record(FILE, b"f"),
            private_record(MORE, b"f", mode=0o100644),
        ],
        [
            private_record(DIR, b"/a"),
            private_record(FILE, b"f"),
            private_record(DIR, b"/b"),
            private_record(MORE, b"f"),
        ],  # of a file in another directory
        [private_record(3, b"/a")],  # type: ignore[arg-type]
    ],
)
def test_bad_private_records_are_refused(agent: Agent, privates: list[bytes]) -> None:
    image = head_image(*privates)
    with pytest.raises(ImageError, match=r"^corrupted image \(a private"):
        read_head(io.BytesIO(image))
    path = agent.run_dir.parent / "bad.img"
    path.write_bytes(image)
    result = agent.run("mosrun", f"-R{path}")
    assert (result.returncode, result.stdout) == (125, "")
    assert result.stderr.startswith(f"mosrun: -R{path}: corrupted image (a private")
    assert result.stderr.count("\n") == 1
