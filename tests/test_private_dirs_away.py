"""mosrun -X{/dir} away from home: the calls on private files that the supervisor
serves where the process runs give what they give natively.  3-node test cluster,
real agents, real mosrun, real programs (test_private_dirs.py has the rest).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import subprocess
import tempfile

from support.clusters import mosrun_at_home, moved, where
from support.users import users_fixture
from test_private_dirs import killed_after, python

from mosix.ckpt import format as fmt
from mosix.ckpt.image import read_head_from
from mosix.testcluster import LocalCluster

users = users_fixture(("mosixxgaps1", "mosixxgaps2"))

# After a line on stdin, opens a private file and a pipe and polls them in every
# way, alone and together with the pipe and its stdin (a pipe from home, empty):
# one line per call, the descriptors by name.
POLLS = (
    "import ctypes, errno, os, select, sys\n"
    "d = sys.argv[1]\n"
    "print('started', flush=True)\n"
    "sys.stdin.readline()\n"
    "f = os.open(os.path.join(d, 'f'), os.O_RDWR | os.O_CREAT, 0o600)\n"
    "os.write(f, b'x')\n"
    "r, w = os.pipe()\n"
    "name = {f: 'f', r: 'r', w: 'w', 0: 'stdin'}\n"
    "IN, OUT, PRI = select.POLLIN, select.POLLOUT, select.POLLPRI\n"
    "def polled(what, *regs, timeout=60000):\n"
    "    p = select.poll()\n"
    "    for fd, ev in regs:\n"
    "        p.register(fd, ev)\n"
    "    print(what, sorted((name[fd], ev) for fd, ev in p.poll(timeout)), flush=True)\n"
    "def selected(what, rl, wl, xl):\n"
    "    got = select.select(rl, wl, xl, 60)\n"
    "    print(what, [sorted(name[fd] for fd in s) for s in got], flush=True)\n"
    "polled('alone', (f, IN | OUT), timeout=-1)\n"
    "polled('with-empty-pipe', (f, IN), (r, IN))\n"
    "polled('with-stdin', (0, IN), (f, IN | OUT))\n"
    "polled('private-not-ready', (f, PRI), (r, IN), timeout=0)\n"
    "os.write(w, b'y')\n"
    "polled('with-full-pipe', (r, IN), (f, IN), (w, OUT))\n"
    "polled('private-not-asked', (f, PRI), (r, IN))\n"
    "selected('select-alone', [f], [f], [f])\n"
    "selected('select-mixed', [f, r, 0], [f, w], [f, r])\n"
    "class PollFd(ctypes.Structure):\n"
    "    _fields_ = [('fd', ctypes.c_int), ('events', ctypes.c_short),\n"
    "                ('revents', ctypes.c_short)]\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "fds = (PollFd * 3)(PollFd(0, IN, 0), PollFd(f, IN, 0), PollFd(-1, IN, 0))\n"
    "n = libc.ppoll(fds, 3, None, None)\n"
    "print('ppoll', n, [(name.get(x.fd, x.fd), x.revents) for x in fds], flush=True)\n"
    "e = select.epoll()\n"
    "try:\n"
    "    e.register(f, select.EPOLLIN)\n"
    "    print('epoll ok', flush=True)\n"
    "except OSError as err:\n"
    "    print('epoll', errno.errorcode[err.errno], flush=True)\n"
    "os.close(f)\n"
    "print('done', flush=True)\n"
    "sys.stdin.readline()\n"
)
POLLED = [
    "alone [('f', 5)]\n",
    "with-empty-pipe [('f', 1)]\n",
    "with-stdin [('f', 5)]\n",
    "private-not-ready []\n",
    "with-full-pipe [('f', 1), ('r', 1), ('w', 4)]\n",
    "private-not-asked [('r', 1)]\n",
    "select-alone [['f'], ['f'], []]\n",
    "select-mixed [['f', 'r'], ['f', 'w'], []]\n",
    "ppoll 1 [('stdin', 0), ('f', 1), (-1, 0)]\n",
    "epoll EPERM\n",
    "done\n",
]


def test_polls_are_native_natively() -> None:
    """What POLLED says is what Linux says: the program run plainly, its stdin an
    empty pipe as away."""
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen(
            [*python(POLLS), d],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        with proc, killed_after(proc, 60):
            assert proc.stdin is not None and proc.stdout is not None
            assert proc.stdout.readline() == "started\n"
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert [proc.stdout.readline() for _ in POLLED] == POLLED
            proc.stdin.close()
            assert proc.wait(timeout=60) == 0


def test_polls_on_private_descriptors_away_are_native(cluster3: LocalCluster) -> None:
    d = "/tmp/private-polls"
    for node in (1, 2):
        cluster3.node_path(node, d).mkdir()
    with mosrun_at_home(cluster3, [f"-X{d}", *python(POLLS), d]) as proc, killed_after(proc, 120):
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline() == "started\n", proc.stderr.read() if proc.stderr else ""
        moved(cluster3, proc, "2")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        said = [proc.stdout.readline() for _ in POLLED]
        assert said == POLLED
        assert where(cluster3, proc.pid) == "node2"  # all served there
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    assert os.listdir(cluster3.node_path(1, d)) == []


# Makes a private file, then for each line on stdin prints its owner as stat,
# lstat, fstat and fstatat (relative to a descriptor of the directory) show it.
OWNERS = (
    "import os, sys\n"
    "d = sys.argv[1]\n"
    "p = os.path.join(d, 'f')\n"
    "open(p, 'w').close()\n"
    "print('made', flush=True)\n"
    "for _ in sys.stdin:\n"
    "    fd, dfd = os.open(p, os.O_RDONLY), os.open(d, os.O_RDONLY)\n"
    "    seen = [os.stat(p), os.lstat(p), os.fstat(fd), os.stat('f', dir_fd=dfd)]\n"
    "    os.close(fd), os.close(dfd)\n"
    "    print([(s.st_uid, s.st_gid) for s in seen], flush=True)\n"
)


def test_private_files_away_have_their_owner_as_at_home(
    cluster3: LocalCluster, users: tuple[str, str]
) -> None:
    d = "/tmp/private-owner"
    for node in (1, 2):
        cluster3.node_path(node, d).mkdir()
        cluster3.node_path(node, d).chmod(0o1777)
    entry = pwd.getpwnam(users[0])
    with mosrun_at_home(cluster3, [f"-X{d}", *python(OWNERS), d], "/tmp", users[0]) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline() == "made\n", proc.stderr.read() if proc.stderr else ""

        def owners() -> str:
            proc.stdin.write("go\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            return proc.stdout.readline()  # type: ignore[union-attr]

        mine = str([(entry.pw_uid, entry.pw_gid)] * 4) + "\n"
        assert owners() == mine  # at home: the user's, as its files elsewhere
        moved(cluster3, proc, "2")
        assert owners() == mine
        assert where(cluster3, proc.pid) == "node2"
        moved(cluster3, proc, "home")
        assert owners() == mine
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0


# In its private directory D as its current directory, one step per line on
# stdin: relative paths, chdir out and in again (by a relative path from one of
# home's directories, and by D's), getcwd; D's files by relative names wherever
# it runs.
IN_CWD = (
    "import os, sys\n"
    "d = sys.argv[1]\n"
    "def step(what):\n"
    "    sys.stdin.readline()\n"
    "    print(what, os.getcwd(), sorted(os.listdir('.')), flush=True)\n"
    "os.chdir(d)\n"
    "with open('x', 'w') as f:\n"
    "    f.write('made at home\\n')\n"
    "step('home')\n"
    "with open('y', 'w') as f:\n"
    "    f.write(open('x').read() + 'copied away\\n')\n"
    "os.rename('y', 'z')\n"
    "step('relative')\n"
    "os.chdir('..')\n"
    "print('parent', os.getcwd(), os.path.exists('x'), flush=True)\n"
    "os.chdir(os.path.basename(d))\n"
    "step('again')\n"
    "print('read', repr(open('z').read()), os.stat('z').st_size, flush=True)\n"
    "os.chdir('/')\n"
    "os.chdir(d)\n"
    "os.chdir('.')\n"
    "step('absolute')\n"
    "step('on')\n"
    "os.unlink('x')\n"
    "step('back')\n"
    "print('read', repr(open('z').read()), flush=True)\n"
)


def test_a_private_current_directory_away_resolves_relative_paths_there(
    cluster3: LocalCluster,
) -> None:
    d = "/tmp/private-cwd"
    for node in (1, 2, 3):
        cluster3.node_path(node, d).mkdir()
    with mosrun_at_home(cluster3, [f"-X{d}", *python(IN_CWD), d]) as proc, killed_after(proc, 120):
        assert proc.stdin is not None and proc.stdout is not None

        def step() -> str:
            proc.stdin.write("go\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            return proc.stdout.readline()  # type: ignore[union-attr]

        home = step()
        assert home == f"home {d} ['x']\n", proc.stderr.read() if proc.stderr else ""
        moved(cluster3, proc, "2")
        assert step() == f"relative {d} ['x', 'z']\n"
        assert proc.stdout.readline() == "parent /tmp False\n"
        assert step() == f"again {d} ['x', 'z']\n"
        content = "made at home\\ncopied away\\n"
        assert proc.stdout.readline() == f"read '{content}' 25\n"
        assert step() == f"absolute {d} ['x', 'z']\n"
        assert where(cluster3, proc.pid) == "node2"
        moved(cluster3, proc, "3")  # on, its current directory private
        assert step() == f"on {d} ['x', 'z']\n"
        moved(cluster3, proc, "home")
        assert step() == f"back {d} ['z']\n"
        assert proc.stdout.readline() == f"read '{content}'\n"
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    for node in (1, 2, 3):
        assert os.listdir(cluster3.node_path(node, d)) == []


BIG = fmt.MAX_RECORD_BYTES + (6 << 20)  # more than one image record holds
# Writes BIG random bytes in D, prints their digest, then the file's digest
# again for each line on stdin.
WRITE_BIG_THEN_DIGESTS = (
    "import hashlib, os, sys\n"
    "p = os.path.join(sys.argv[1], 'big')\n"
    f"data = os.urandom({BIG})\n"
    "with open(p, 'wb') as f:\n"
    "    f.write(data)\n"
    "del data\n"
    "def digest():\n"
    "    with open(p, 'rb') as f:\n"
    "        print(hashlib.sha256(f.read()).hexdigest(), os.stat(p).st_size, flush=True)\n"
    "digest()\n"
    "for _ in sys.stdin:\n"
    "    digest()\n"
)


def test_a_private_file_larger_than_a_record_moves_and_is_checkpointed(
    cluster3: LocalCluster,
) -> None:
    d = "/tmp/private-big"
    for node in (1, 2):
        cluster3.node_path(node, d).mkdir()
    ckpt = "/tmp/private-big.ckpt"
    argv = [f"-X{d}", f"-C{ckpt}", *python(WRITE_BIG_THEN_DIGESTS), d]
    with mosrun_at_home(cluster3, argv) as proc, killed_after(proc, 240):
        assert proc.stdin is not None and proc.stdout is not None
        written = proc.stdout.readline()
        assert written.endswith(f" {BIG}\n"), proc.stderr.read() if proc.stderr else ""

        def digest() -> str:
            proc.stdin.write("again\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            return proc.stdout.readline()  # type: ignore[union-attr]

        moved(cluster3, proc, "2")
        assert digest() == written
        assert where(cluster3, proc.pid) == "node2"
        done = cluster3.run(1, ["migrate", str(proc.pid), "checkpoint"], capture_output=True)
        assert done.returncode == 0, done.stderr
        head = read_head_from(str(cluster3.node_path(1, f"{ckpt}.1")))
        assert [(f.name, len(f.data)) for f in head.private_files] == [("big", BIG)]
        assert f"{hashlib.sha256(head.private_files[0].data).hexdigest()} {BIG}\n" == written
        del head
        moved(cluster3, proc, "home")
        assert digest() == written
        proc.kill()
        proc.wait()
    # recovered from the checkpoint taken away: the file is back, whole
    with mosrun_at_home(cluster3, [f"-R{ckpt}.1"]) as again, killed_after(again, 120):
        assert again.stdin is not None and again.stdout is not None
        again.stdin.write("again\n")
        again.stdin.flush()
        assert again.stdout.readline() == written, again.stderr.read() if again.stderr else ""
        again.stdin.close()
        assert again.wait(timeout=60) == 0
    for node in (1, 2):
        assert os.listdir(cluster3.node_path(node, d)) == []
