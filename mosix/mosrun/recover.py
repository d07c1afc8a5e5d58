"""``mosrun -R{file}``: recover a process from its checkpoint.

Python does what needs paths and policy: it checks the image's head, puts
every descriptor back at its number (the manual's rules: regular files and
directories reopened with their flags and offsets, ``-O`` remaps, unlinked
files recreated from their saved contents and unlinked again, special files
taken from mosrun's own descriptors or /dev/null), enters the directory, sets
the umask and limits, registers with the node agent (the checkpoint series
continues), and then becomes the restorer through the discipline launcher.
The restorer (csrc/restore/mosix_restore.c) rebuilds memory and registers and
resumes the program: same pid as this mosrun from here on.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Callable, Mapping
from typing import NoReturn

from mosix.arguments import MosrunArgs, Unsupported
from mosix.ckpt import format as fmt
from mosix.ckpt.image import ImageError, ImageHead, OpenFile, read_head_from
from mosix.exits import EXIT_USAGE, Failure

REOPEN_DROP = os.O_CREAT | os.O_EXCL | os.O_TRUNC | getattr(os, "O_TMPFILE", 0)


def problem(option: str, message: str) -> Failure:
    return Failure(f"{option}: {message}", EXIT_USAGE)


def read(args: MosrunArgs) -> ImageHead:
    assert args.recover is not None
    try:
        head = read_head_from(args.recover)
    except ImageError as e:
        raise problem(f"-R{args.recover}", str(e)) from None
    fds = {f.fd for f in head.files}
    for r in args.reopen:
        if r.fd not in fds:
            raise problem(f"-O{r.fd}", f"the checkpoint has no file descriptor {r.fd}")
    return head


def _dup_above(fd: int, base: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD, base)


def _high(fd: int, base: int) -> int:
    """``fd`` moved to a number above every descriptor of the image."""
    if fd >= base:
        return fd
    high = _dup_above(fd, base)
    os.close(fd)
    return high


def _open_at_offset(path: str, f: OpenFile, create: bool, option: str) -> int:
    flags = (f.flags & ~REOPEN_DROP) | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, f.mode & 0o7777)
        if f.kind is not fmt.FileKind.DIRECTORY and f.offset > 0:
            os.lseek(fd, f.offset, os.SEEK_SET)
    except OSError as e:
        raise problem(option, f"{path}: {e.strerror}") from None
    return fd


def _recreate_unlinked(head: ImageHead, f: OpenFile) -> int:
    """An unlinked file: a new file with the saved contents, opened as before, unlinked."""
    import tempfile  # only for an image with unlinked files: -R starts without it

    directory = os.path.dirname(f.path)
    if not os.path.isdir(directory):
        directory = tempfile.gettempdir()
    try:
        tmp_fd, tmp = tempfile.mkstemp(dir=directory, prefix=".mosix-recovered-")
        try:
            try:  # piece by piece at its offset: holes stay holes, nothing is built in memory
                for offset, data in head.unlinked_pieces(f.fd):
                    os.pwrite(tmp_fd, data, offset)
            finally:
                os.close(tmp_fd)
            os.chmod(tmp, f.mode & 0o7777)
            return _open_at_offset(tmp, f, create=False, option=f"-R: descriptor {f.fd}")
        finally:
            os.unlink(tmp)
    except (OSError, OverflowError) as e:
        message = f"cannot recreate unlinked {f.path}: {getattr(e, 'strerror', None) or e}"
        raise problem(f"-R: descriptor {f.fd}", message) from None


def _special(f: OpenFile, base: int) -> int:
    """The caller's descriptor of that number if open (as is), else /dev/null."""
    try:
        os.fstat(f.fd)
        return _dup_above(f.fd, base)
    except OSError:
        return os.open(os.devnull, f.flags & os.O_ACCMODE)


def fd_base(head: ImageHead) -> int:
    """Above every descriptor of the image: where files wait before they are placed."""
    base = max((f.fd for f in head.files), default=2) + 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = base + len(head.files) + 8
    if soft != resource.RLIM_INFINITY and soft < need:
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    return base


def open_files(args: MosrunArgs, head: ImageHead, base: int) -> dict[int, int]:
    """Each image descriptor's new open file, above ``base`` (target fd -> fd)."""
    remap = {r.fd: r.path for r in args.reopen}
    opened: dict[int, int] = {}
    for f in sorted(head.files, key=lambda f: f.fd):
        if f.fd in remap:
            fd = _open_at_offset(remap[f.fd], f, create=True, option=f"-O{f.fd}")
        elif f.kind in (fmt.FileKind.REGULAR, fmt.FileKind.DIRECTORY):
            hint = f" (give another file with -O{f.fd}=file)"
            try:
                fd = _open_at_offset(f.path, f, create=False, option=f"-R: descriptor {f.fd}")
            except Failure as e:
                raise Failure(e.message + hint, e.status) from None
        elif f.kind is fmt.FileKind.UNLINKED:
            fd = _recreate_unlinked(head, f)
        elif f.kind is fmt.FileKind.SPECIAL:
            fd = _special(f, base)
        else:
            fd = os.open(os.devnull, os.O_RDWR)
        opened[f.fd] = _high(fd, base)
    return opened


def place(opened: Mapping[int, int], *keep_open: int) -> None:
    """Move the new files to their numbers; close everything else but ``keep_open``."""
    keep = {*keep_open, *opened.values()}
    for fd in list(map(int, os.listdir("/proc/self/fd"))):
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    for target, fd in opened.items():
        os.dup2(fd, target, inheritable=True)
    for fd in opened.values():
        os.close(fd)


def process_state(head: ImageHead) -> None:
    try:
        os.chdir(head.cwd)
    except OSError as e:
        message = f"cannot enter the checkpoint's directory {head.cwd}: {e.strerror}"
        raise problem("-R", message) from None
    umask = head.process["umask"]
    assert isinstance(umask, int)
    os.umask(umask & 0o777)
    limits = head.process["rlimits"]
    assert isinstance(limits, tuple)
    for which in range(16):
        if which == resource.RLIMIT_NOFILE:
            continue  # fixed by the discipline
        soft, hard = limits[2 * which], limits[2 * which + 1]
        inf = resource.RLIM_INFINITY
        soft = inf if soft >= 1 << 63 else soft
        hard = inf if hard >= 1 << 63 else hard
        with contextlib.suppress(OSError, ValueError):  # raising a hard limit needs privilege
            resource.setrlimit(which, (soft, hard))


def settings(head: ImageHead) -> MosrunArgs:
    """The program options the checkpointed process ran with (its MOSIX_INHERIT words)."""
    from mosix.start_contract import INHERIT_ENV, outer_settings

    return outer_settings({INHERIT_ENV: head.options.get("inherit", "")})


def option_int(head: ImageHead, key: str) -> int:
    try:
        return max(0, int(head.options.get(key, "0")))
    except ValueError:
        return 0


def effective_settings(args: MosrunArgs, head: ImageHead) -> MosrunArgs:
    """The recovered settings, with the location options -R was given (-J, -G, -L/-l) over them."""
    from mosix.arguments import inherit

    return inherit(settings(head), args)


def command_of(head: ImageHead) -> str:
    return head.options.get("argv0") or head.comm


def register(args: MosrunArgs, head: ImageHead, env: dict[str, str]) -> int:
    """Register the recovered process; its checkpoint series continues (-N, -A may change).
    Returns the agent's maximum of its -X files at home in MiB (0: none, or no agent).

    A placement (-r, -{n}, -b, -j, with -F) is the agent's to honour: it moves
    the process once the restorer has resumed it (mosix.home_agent.recovered_start).
    """
    from mosix.agent_client import AGENT_SOCKET_ENV, register_program
    from mosix.arguments import inherited_words
    from mosix.mosrun.launch import drop_wrapper_group
    from mosix.protocol import Register
    from mosix.start_contract import placement_problem

    limit, interval = args.checkpoint_max, args.checkpoint_minutes
    effective = effective_settings(args, head)
    registered = register_program(
        Register(
            pid=os.getpid(),
            job=effective.job_id or 0,
            estimate_minutes=args.duration_minutes,
            memory_mb=effective.memory_mb,
            flags=inherited_words(effective),
            command=[os.fsencode(command_of(head))],
            checkpoint_file=os.fsencode(head.options.get("checkpoint-file", "")),
            checkpoint_next=option_int(head, "checkpoint-next"),
            checkpoint_limit=option_int(head, "checkpoint-limit") if limit is None else limit,
            checkpoint_interval=(
                option_int(head, "checkpoint-interval") if interval is None else interval
            ),
            placement=args.placement.option() or "",
            force_elsewhere=args.force_elsewhere,
            recovering=True,
        )
    )
    drop_wrapper_group()  # -g: the agent was asked; files are opened as the user's group
    if registered is None:  # no agent: this node only
        problem = placement_problem(args)
        if problem is not None:
            raise Failure(problem, EXIT_USAGE)
        return 0
    socket_path = registered[0]
    if socket_path is not None:
        env[AGENT_SOCKET_ENV] = socket_path
    return registered[1].private_mb


def queue_request(args: MosrunArgs, head: ImageHead) -> MosrunArgs:
    """What the queue is told of a recovery (-q/-Q): the program and the settings it had."""
    from dataclasses import replace

    effective = effective_settings(args, head)
    return replace(
        args,
        program=(command_of(head),),
        memory_mb=effective.memory_mb,
        job_id=effective.job_id,
    )


def recover(
    args: MosrunArgs, env: dict[str, str], wait_turn: Callable[[MosrunArgs], None]
) -> NoReturn:
    """Become the recovered process (through the launcher and the restorer).

    With -q/-Q, ``wait_turn`` waits in the queue first (after the image's head
    was checked, so a bad file is refused at once, not when its turn comes).
    """
    from mosix.discipline.launcher import exec_launcher, private_files_stream
    from mosix.mosrun.launch import default_signals
    from mosix.native import restorer
    from mosix.start_contract import INHERIT_ENV

    assert args.recover is not None
    head = read(args)
    if args.queue is not None:
        wait_turn(queue_request(args, head))
    try:
        image_fd = os.open(args.recover, os.O_RDONLY)
    except OSError as e:
        raise problem(f"-R{args.recover}", e.strerror or "cannot open") from None
    base = fd_base(head)
    image_fd = _high(image_fd, base)
    os.set_inheritable(image_fd, True)
    try:  # the restorer's refusals go to mosrun's own stderr, not the image's fd 2
        error_fd = _dup_above(2, base)
        os.set_inheritable(error_fd, True)
    except OSError:
        error_fd = -1  # no stderr: nowhere to report but the exit status
    private_mb = register(args, head, env)  # first: a refused placement creates no -O file
    opened = open_files(args, head, base)
    process_state(head)
    private_fd = None  # mosrun -X: the launcher fills the directories from it
    if head.private_dirs:
        files = [(f.directory, os.fsencode(f.name), f.mode, f.data) for f in head.private_files]
        private_fd = _high(private_files_stream(files), base)
        os.set_inheritable(private_fd, True)
    kept = [fd for fd in (image_fd, error_fd, private_fd) if fd is not None and fd >= 0]
    place(opened, *kept)
    env[INHERIT_ENV] = head.options.get("inherit", "")
    default_signals()
    mode = (effective_settings(args, head).unsupported or Unsupported.KILL).value
    argv = restorer.argv(f"mosrun: -R{args.recover}", image_fd, error_fd)
    exec_launcher(
        mode,
        "mosrun",
        argv[0],
        argv,
        env,
        private_dirs=head.private_dirs,
        private_files=private_fd,
        private_mb=private_mb,
    )
