"""``mosrun -I{file}``: the open files of a checkpoint, with modes, flags and offsets.

Every name read from the image (file names, the command, its directory) was
written by whoever made the image: it is shown escaped (mosix.display).
"""

from __future__ import annotations

import stat
import time

from mosix.ckpt import format as fmt
from mosix.ckpt.image import ImageHead, OpenFile, describe_flags
from mosix.display import shown

KIND_WORDS = {
    fmt.FileKind.REGULAR: "file",
    fmt.FileKind.DIRECTORY: "directory",
    fmt.FileKind.SPECIAL: "special",
    fmt.FileKind.UNLINKED: "unlinked",
    fmt.FileKind.PIPE: "pipe",
    fmt.FileKind.SOCKET: "socket",
    fmt.FileKind.OTHER: "other",
}

RECOVERY = {
    fmt.FileKind.REGULAR: "reopened",
    fmt.FileKind.DIRECTORY: "reopened",
    fmt.FileKind.SPECIAL: "caller's, else /dev/null",
    fmt.FileKind.UNLINKED: "saved in the checkpoint",
    fmt.FileKind.OTHER: "/dev/null",
}


def file_line(f: OpenFile) -> str:
    offset = str(f.offset) if f.kind in (fmt.FileKind.REGULAR, fmt.FileKind.UNLINKED) else "-"
    mode = f"{stat.S_IMODE(f.mode):04o}"
    flags = describe_flags(f.flags) + ("|O_CLOEXEC" if f.cloexec else "")
    on_recovery = RECOVERY.get(f.kind, "")
    return (
        f"{f.fd:>4}  {KIND_WORDS[f.kind]:<9} {mode:<5} {flags:<26} {offset:>12}  {shown(f.path)}"
        + (f"  ({on_recovery})" if on_recovery else "")
    )


def listing(path: str, head: ImageHead) -> list[str]:
    taken = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(head.created_ns / 1e9))
    argv0 = head.options.get("argv0", "")
    out = [
        f"{shown(path)}: checkpoint of process {head.pid} ({shown(head.comm)}), taken {taken}",
        f"program: {shown(argv0 or head.comm)}; directory: {shown(head.cwd)}",
        f"{'fd':>4}  {'type':<9} {'mode':<5} {'flags':<26} {'offset':>12}  file",
    ]
    out += [file_line(f) for f in sorted(head.files, key=lambda f: f.fd)]
    if not head.files:
        out.append("(no open files)")
    return out
