"""Each node's persistent mount namespace, with its own /tmp, /run/mosix and /etc/mosix.

As ``ip netns`` does for network namespaces, a namespace outlives its processes
by being bind-mounted on a file: ``/run/mosix-testcluster/NAME/nodek.mnt``.
That needs a parent mount with private propagation, so /run/mosix-testcluster
is bind-mounted on itself and made private.  The node's three directories are
tmpfs mounts on the host (``.../nodek/{tmp,run,etc}``: how the host reads a
node's files, even after the node "died") bind-mounted over the real paths in
the node's namespace; everything else is the host's (propagation slave: the
host's later mounts show up in the node, never the reverse).  Inside the node,
/run/mosix-testcluster itself is unmounted, so a node cannot peek at another.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from mosix.testcluster.commands import system_command
from mosix.testcluster.errors import ClusterError
from mosix.testcluster.layout import BASE_DIR, PRIVATE_DIRS, Layout

TMPFS_MODES = {"/tmp": "1777", "/run/mosix": "755", "/etc/mosix": "755"}
CREATED_MARK = ".created"  # in BASE_DIR: host directories made as mount points, to remove


def mount_points() -> set[str]:
    """Every mount point in this process's mount namespace."""
    points = set()
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4]
            points.add(point.encode().decode("unicode_escape"))  # \040 and friends
    return points


def under(directory: Path) -> list[str]:
    """Mount points at or below ``directory``, deepest first."""
    prefix = str(directory)
    found = [p for p in mount_points() if p == prefix or p.startswith(prefix + "/")]
    return sorted(found, key=len, reverse=True)


def ensure_base() -> None:
    """/run/mosix-testcluster as a private mount, and the node's mount points on the host."""
    BASE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    if str(BASE_DIR) not in mount_points():
        system_command(["mount", "--bind", str(BASE_DIR), str(BASE_DIR)], f"mounting {BASE_DIR}")
        system_command(["mount", "--make-private", str(BASE_DIR)], f"making {BASE_DIR} private")
    for inside in PRIVATE_DIRS:
        if not os.path.isdir(inside):
            os.makedirs(inside, mode=0o755)
            with open(BASE_DIR / CREATED_MARK, "a") as mark:
                mark.write(inside + "\n")


def create_node(layout: Layout, k: int) -> None:
    """Node k's tmpfs directories and its persistent mount namespace using them."""
    for inside, mode in TMPFS_MODES.items():
        where = layout.private_dir(k, inside)
        where.mkdir(parents=True, exist_ok=True)
        system_command(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"mode={mode}",
                f"{layout.netns(k)}-{where.name}",
                str(where),
            ],
            f"node {k}: mounting {where}",
        )
    ns_file = layout.mount_ns_file(k)
    ns_file.touch(mode=0o644)
    binds = " && ".join(
        f'mount --bind "${i + 1}" {inside}' for i, inside in enumerate(PRIVATE_DIRS)
    )
    script = f'{binds} && umount -R -l "${len(PRIVATE_DIRS) + 1}"'
    sources = [str(layout.private_dir(k, inside)) for inside in PRIVATE_DIRS]
    system_command(
        [
            "unshare",
            f"--mount={ns_file}",
            "--propagation",
            "slave",
            "--",
            "sh",
            "-ec",
            script,
            "sh",
            *sources,
            str(BASE_DIR),
        ],
        f"node {k}: creating its mount namespace",
    )


def remove(layout: Layout) -> None:
    """Unmount and delete everything of the cluster under /run/mosix-testcluster."""
    for point in under(layout.directory):
        system_command(["umount", "-l", point], f"unmounting {point}")
    if layout.directory.is_dir():
        for path in sorted(layout.directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
        layout.directory.rmdir()
    remove_base_if_unused()


def remove_base_if_unused() -> None:
    """Once no cluster is left: unmount /run/mosix-testcluster, remove what we created."""
    if not BASE_DIR.is_dir() or any(p.is_dir() for p in BASE_DIR.iterdir()):
        return
    mark = BASE_DIR / CREATED_MARK
    created = mark.read_text().split() if mark.exists() else []
    for point in under(BASE_DIR):
        system_command(["umount", "-l", point], f"unmounting {point}")
    mark.unlink(missing_ok=True)
    try:
        BASE_DIR.rmdir()
    except OSError as e:
        raise ClusterError(f"removing {BASE_DIR}: {e.strerror}") from None
    for directory in created:
        with contextlib.suppress(OSError):
            os.rmdir(directory)  # only when still empty: somebody may use it by now
