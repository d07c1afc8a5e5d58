"""Batch jobs, the chosen node's side: run another node's ``mosrun -E``/``-M`` job here.

The home agent (mosix.home_agent.batch_submit) sends a BatchOffer on an
authenticated cluster connection.  The job is started as the user (ids and
groups from the offer, which the home agent read from the kernel) by the
launcher in mode n, which enters the job's directory as the user: no path of
the user's is followed here as root.  -M jobs are ``mosrun`` itself, so their
home is this node.  The job's standard streams are pipes pumped over the same
connection (BatchData frames); its end goes back as Exited (-signal when a
signal killed it).  A lost connection kills the job.

A -M job's mosrun registers with this node's agent as the user, without the
site's group (``[site] mosrun_group``): its home agent let it in, so while it
runs its pid is in ``mosruns`` (HostedMosruns), which this node's gate admits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys

import trio

from mosix.cluster.nodemap import Node
from mosix.cluster.stream import PeerStream, PeerUnavailable
from mosix.discipline.launcher import batch_words
from mosix.protocol import (
    BatchData,
    BatchOffer,
    BatchSignal,
    Exited,
    ProtocolError,
    Refused,
    Started,
)

log = logging.getLogger("mosixd")
CHUNK = 1 << 18  # bytes per BatchData frame (frames are at most 1 MiB)
KINDS = ("E", "M")
SIGNALS = frozenset(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP}


def mosrun_path() -> str:
    """This installation's mosrun (for -M jobs): beside the agent's Python."""
    return os.path.join(os.path.dirname(sys.executable), "mosrun")


class HostedMosruns:
    """The pids of the -M jobs this node runs for other nodes (their mosrun)."""

    def __init__(self) -> None:
        self.pids: set[int] = set()

    def runs(self, pid: int) -> bool:
        return pid in self.pids


def refusal(msg: BatchOffer, peer: Node) -> str | None:
    if msg.home != peer.number:
        return "a bad batch offer"
    if msg.kind not in KINDS or len(msg.argv) < 2 or not msg.cwd.startswith(b"/"):
        return "a bad batch offer"
    return None


async def host_batch(
    stream: PeerStream, msg: BatchOffer, peer: Node, mosruns: HostedMosruns
) -> None:
    """Run one batch job for ``peer`` until it ends and its output has gone home."""
    why = refusal(msg, peer)
    if why is not None:
        await stream.send(Refused(error=why))
        await stream.aclose()
        return
    argv = list(msg.argv)  # the program's name, then its argument vector
    if msg.kind == "M":
        argv = [os.fsencode(mosrun_path()), *argv]  # argv[0] "mosrun"
    try:
        proc = await trio.lowlevel.open_process(
            batch_words(argv, msg.cwd, msg.umask),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            env=dict(msg.env),
            user=msg.uid,
            group=msg.gid,
            extra_groups=list(msg.groups),
            restore_signals=True,
            start_new_session=True,  # signals after a fork reach the job's whole group
        )
    except (OSError, ValueError) as e:
        await stream.send(Refused(error=f"cannot start the batch job: {e}"))
        await stream.aclose()
        return
    log.info("batch job %d of %s (uid %d): started", proc.pid, peer.label(), msg.uid)
    if msg.kind == "M":
        mosruns.pids.add(proc.pid)
    try:
        await stream.send(Started(pid=proc.pid))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_input, stream, proc, nursery.cancel_scope)
            async with trio.open_nursery() as outputs:
                assert proc.stdout is not None and proc.stderr is not None
                outputs.start_soon(_output, stream, proc.stdout, 1)
                outputs.start_soon(_output, stream, proc.stderr, 2)
            code = await proc.wait()
            nursery.cancel_scope.cancel()
        await stream.send(Exited(code=code))
        log.info("batch job %d of %s: ended (%d)", proc.pid, peer.label(), code)
    except PeerUnavailable as e:
        log.warning("batch job %d of %s: %s", proc.pid, peer.label(), e)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await proc.wait()
        mosruns.pids.discard(proc.pid)
        await stream.aclose()


async def _output(stream: PeerStream, pipe: trio.abc.ReceiveStream, fd: int) -> None:
    async with pipe:
        while data := await pipe.receive_some(CHUNK):
            await stream.send(BatchData(fd=fd, data=data))
    await stream.send(BatchData(fd=fd, data=b""))


async def _input(stream: PeerStream, proc: trio.Process, scope: trio.CancelScope) -> None:
    """Home's frames: standard input and signals; a lost home kills the job."""
    stdin = proc.stdin
    assert stdin is not None
    try:
        while True:
            msg = await stream.receive()
            if isinstance(msg, BatchData) and msg.fd == 0 and stdin is not None:
                try:
                    if msg.data:
                        await stdin.send_all(msg.data)
                    else:
                        await stdin.aclose()
                        stdin = None
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    stdin = None  # the job closed its input: the rest is dropped
            elif isinstance(msg, BatchSignal) and msg.signal in SIGNALS:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, msg.signal)
    except (PeerUnavailable, ProtocolError) as e:
        log.warning("batch job %d: its home is gone (%s)", proc.pid, e)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if stdin is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stdin.aclose()
