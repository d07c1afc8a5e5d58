"""What mosrun -X (private temporary directories) costs, against the same run without it.

    python3 benchmarks/bench_private_dirs.py [--rounds 7] [--user nobody]

Measured in one run, the cases interleaved round by round, each number the best
round.  The launcher (``mosix-exec``) is run directly, without an agent, so the
numbers are its own: start-up of ``true`` with and without one -X directory (a
mount namespace, for a user also a user namespace, and a tmpfs); a loop of
mkdir+rmdir outside the private directory (mkdir goes to the guard under -X, to
look at the new name's directory); and writing then reading 64 MiB in the private
directory (tmpfs) against the same in an ordinary directory of /var/tmp, and in
/dev/shm natively (the cost of tmpfs itself).
``--user`` runs every case as that user (setpriv), which adds the user namespace.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mosix.native import native_path
from mosix.native_names import Program

LOOPS = 2000
BIG = 64 << 20
MKDIRS = (
    "import os, sys, time\n"
    "d = os.path.join(sys.argv[1], 'sub')\n"
    "t = time.perf_counter()\n"
    f"for _ in range({LOOPS}):\n"
    "    os.mkdir(d)\n"
    "    os.rmdir(d)\n"
    f"print((time.perf_counter() - t) / {LOOPS})\n"
)
WRITE_READ = (
    "import os, sys, time\n"
    "p = os.path.join(sys.argv[1], 'big')\n"
    f"block = b'x' * (1 << 20)\n"
    "t = time.perf_counter()\n"
    "with open(p, 'wb') as f:\n"
    f"    for _ in range({BIG >> 20}):\n"
    "        f.write(block)\n"
    "with open(p, 'rb') as f:\n"
    "    while f.read(1 << 20):\n"
    "        pass\n"
    "os.unlink(p)\n"
    "print(time.perf_counter() - t)\n"
)


def launcher(private: Path | None, argv: list[str], user: str | None) -> list[str]:
    words = [native_path(Program.LAUNCHER), "-m", "u", "-p", "mosrun"]
    words += ["-s", native_path(Program.SHIM)]
    if private is not None:
        words += ["-X", str(private)]
    words += ["--", argv[0], *argv]
    if user is not None:
        who = pwd.getpwnam(user)
        ids = [f"--reuid={who.pw_uid}", f"--regid={who.pw_gid}", "--clear-groups"]
        words = ["setpriv", *ids, "--", *words]
    return words


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def reported(argv: list[str], env: dict[str, str]) -> float:
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=env)
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--user", default=None)
    options = parser.parse_args()
    env = dict(os.environ, MOSIX_RUN_DIR="/nonexistent/mosix-bench-private")
    base = Path(tempfile.mkdtemp(prefix="bench-private-", dir="/var/tmp"))
    base.chmod(0o755)
    private, plain = base / "private", base / "plain"
    for d in (private, plain):
        d.mkdir()
        d.chmod(0o1777)
    py = [sys.executable, "-P", "-c"]
    user = options.user
    cases: dict[str, tuple[str, list[str]]] = {
        "start: true": ("wall", launcher(None, ["true"], user)),
        "start: true, -X": ("wall", launcher(private, ["true"], user)),
        "mkdir+rmdir": ("reported", launcher(None, [*py, MKDIRS, str(plain)], user)),
        "mkdir+rmdir, -X": ("reported", launcher(private, [*py, MKDIRS, str(plain)], user)),
        "64 MiB write+read, /var/tmp": (
            "reported",
            launcher(None, [*py, WRITE_READ, str(plain)], user),
        ),
        "64 MiB write+read, -X": (
            "reported",
            launcher(private, [*py, WRITE_READ, str(private)], user),
        ),
        # tmpfs itself, outside MOSIX: what the private directory's file system costs
        "64 MiB write+read, /dev/shm natively": ("reported", [*py, WRITE_READ, "/dev/shm"]),
    }
    best = {name: float("inf") for name in cases}
    try:
        for _ in range(options.rounds):
            for name, (how, argv) in cases.items():
                took = wall(argv, env) if how == "wall" else reported(argv, env)
                best[name] = min(best[name], took)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"as {user or 'the caller'}, best of {options.rounds}")
    print("| measurement | without -X | with -X | ratio |")
    print("|---|---:|---:|---:|")
    rows = (
        ("start-up of `true`", "start: true", "start: true, -X", "ms", 1e3),
        ("mkdir+rmdir outside the directory", "mkdir+rmdir", "mkdir+rmdir, -X", "µs", 1e6),
        ("64 MiB write+read", "64 MiB write+read, /var/tmp", "64 MiB write+read, -X", "ms", 1e3),
    )
    for label, without, with_x, unit, scale in rows:
        a, b = best[without], best[with_x]
        print(f"| {label} | {a * scale:.1f} {unit} | {b * scale:.1f} {unit} | {b / a:.2f}x |")
    shm = best["64 MiB write+read, /dev/shm natively"]
    print(f"64 MiB write+read in /dev/shm (tmpfs) without MOSIX: {shm * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
