"""Synthetic checkpoint images for the restorer's tests, with no capturer at all.

Everything is built from the one definition of the format (mosix/ckpt/format.py:
its structs' ``pack``) and checksummed with mxh64 (mosix.native.checksum, the C
function in-process; use_c_hash loads it through ctypes instead).  ``Image``
holds the parts of an image as values a test can change; ``Image.encode`` lays
them out with correct sequence numbers, checksums and END counts, and
``Image.parts`` gives the same bytes split at record boundaries (for truncation
tests).

``tiny_image`` is a restorable image: one RX area of hand-assembled code that
writes "restored\\n" to fd 1 and exits with status 7, one RW stack area, and
this machine's CPU facts and vdso layout (the tests run the restorer on the
same kernel).  ``elf_image`` loads a small static ELF program (PT_LOAD
segments as areas) into an image, for richer tests of the restored state.
"""

from __future__ import annotations

import ctypes
import struct
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from support.cbuild import build_c

from mosix.ckpt import format as F
from mosix.native import NATIVE_DIR
from mosix.native.checksum import mxh64 as py_mxh64

REPO = Path(__file__).resolve().parents[1]
CPROGS = REPO / "tests" / "cprogs"
# The compiled parts of the imported package: the checkout's (python -m pytest from
# the repository, after setup.py build_native) or the installed one (CI's pytest).
RESTORER = NATIVE_DIR / "mosix-restore"
LAUNCHER = NATIVE_DIR / "mosix-exec"
SHIM = NATIVE_DIR / "libmosix_shim.so"
PAGE = F.PAGE_SIZE
K = F.Kind
A = F.AreaFlag

PROT_R, PROT_W, PROT_X = 1, 2, 4
SS_DISABLE = 2
AT_NULL, AT_PAGESZ = 0, 6
USER_CS, USER_DS = 0x33, 0x2B

# ------------------------------------------------------------------ checksums

Hasher = Callable[[bytes], int]
_hasher: Hasher = py_mxh64


def mxh(data: bytes) -> int:
    return _hasher(data)


def use_c_hash(build_dir: Path) -> None:
    """Checksum with csrc/common/ckpt_hash.h through ctypes (large images)."""
    global _hasher
    lib_path = build_dir / "librestore_hash.so"
    if not lib_path.exists():
        common = REPO / "csrc" / "common"
        build_c(CPROGS / "restore_hash.c", lib_path, "-O2", "-shared", "-fPIC", "-I", str(common))
    lib = ctypes.CDLL(str(lib_path))
    fn = lib.restore_test_mxh64
    fn.restype = ctypes.c_uint64
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]

    def c_hash(data: bytes) -> int:
        return int(fn(bytes(data), len(data), 0))

    _hasher = c_hash


# ------------------------------------------------------------------ raw pieces


def file_header(
    *,
    magic: bytes = F.MAGIC,
    version: int = F.VERSION,
    arch: int = F.ARCH_X86_64,
    page_size: int = PAGE,
    header_size: int = 64,
    flags: int = 0,
    pid: int = 4242,
) -> bytes:
    body = F.FILE_HEADER.pack(
        magic=magic,
        version=version,
        arch=arch,
        page_size=page_size,
        header_size=header_size,
        flags=flags,
        pid=pid,
        created_ns=1_700_000_000_000_000_000,
    )[:56]
    return body + struct.pack("<Q", py_mxh64(body))


def record_header(kind: int, length: int, payload_hash: int, seq: int, flags: int = 0) -> bytes:
    head = struct.pack("<HHIQQ", kind, flags, seq, length, payload_hash)
    return head + struct.pack("<Q", py_mxh64(head))


def record(kind: int, payload: bytes, seq: int, flags: int = 0) -> bytes:
    return record_header(kind, len(payload), mxh(payload), seq, flags) + payload


# ------------------------------------------------------------------ images


@dataclass
class Area:
    start: int
    end: int
    prot: int
    flags: int = 0
    name: bytes = b""
    pages: list[tuple[int, bytes]] = field(default_factory=list)  # (address, whole pages)
    pgoff: int = 0
    mapfile: int = 0  # a REFERENCE area's MAPFILE index

    def payload(self) -> bytes:
        return (
            F.AREA.pack(
                start=self.start,
                end=self.end,
                pgoff=self.pgoff,
                prot=self.prot,
                flags=self.flags,
                name_len=len(self.name),
                mapfile=self.mapfile,
            )
            + self.name
        )


def mapfile_payload(path: Path, referenced: bytes, **fields: int) -> bytes:
    """A MAPFILE record for the file at ``path`` as it is now, its referenced pages'
    bytes ``referenced``; ``fields`` override (a file that differs)."""
    st = path.stat()
    name = bytes(path)
    values = {
        "dev": st.st_dev,
        "ino": st.st_ino,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "hash": py_mxh64(referenced),
        "path_len": len(name),
        **fields,
    }
    return F.MAPFILE.pack(**values) + name


def pages_payload(addr: int, data: bytes) -> bytes:
    return F.PAGES.pack(addr=addr, npages=len(data) // PAGE) + data


@dataclass
class Image:
    process: dict[str, object]
    regs: dict[str, int]
    xstate: bytes
    sigactions: list[dict[str, int]]
    areas: list[Area]
    options: bytes = b"argv0=tiny\n"
    cwd: bytes = b"/"
    files: list[tuple[int, bytes]] = field(default_factory=list)  # (FILE or FILEDATA, payload)
    header: bytes = field(default_factory=file_header)
    mapfiles: list[bytes] = field(default_factory=list)  # MAPFILE payloads

    def records(self) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = [
            (K.PROCESS, F.PROCESS.pack(**self.process)),
            (K.OPTIONS, self.options),
            (K.CWD, self.cwd),
            *self.files,
            (K.REGS, F.REGS.pack(**self.regs)),
            (K.XSTATE, self.xstate),
            (K.SIGACTIONS, b"".join(F.SIGACTION.pack(**s) for s in self.sigactions)),
            *((K.MAPFILE, m) for m in self.mapfiles),
        ]
        pages = 0
        for area in self.areas:
            out.append((K.AREA, area.payload()))
            for addr, data in area.pages:
                out.append((K.PAGES, pages_payload(addr, data)))
                pages += len(data) // PAGE
        end = F.END.pack(records=len(out), areas=len(self.areas), pages=pages)
        out.append((K.END, end))
        return out

    def parts(self) -> list[bytes]:
        """The file header, then each record's bytes."""
        return [self.header] + [record(k, p, i) for i, (k, p) in enumerate(self.records())]

    def encode(self) -> bytes:
        return b"".join(self.parts())

    def copy(self) -> Image:
        return replace(
            self,
            process=dict(self.process),
            regs=dict(self.regs),
            sigactions=[dict(s) for s in self.sigactions],
            areas=[replace(a, pages=list(a.pages)) for a in self.areas],
            files=list(self.files),
            mapfiles=list(self.mapfiles),
        )


def encode_records(records: Iterable[tuple[int, bytes]], header: bytes | None = None) -> bytes:
    """Records as given (no END added), numbered from 0."""
    head = file_header() if header is None else header
    return head + b"".join(record(k, p, i) for i, (k, p) in enumerate(records))


# ------------------------------------------------------------------ this machine


@dataclass(frozen=True)
class Host:
    """What an image must agree with on this machine: CPU facts and the vdso layout."""

    xcr0: int
    xsave_size: int
    avx_offset: int
    cpuid: dict[str, int]
    vdso: tuple[int, int]
    vdso_hash: int  # of this process's [vdso]: the same kernel's as the restorer's
    vvar: tuple[int, int]
    vvar_vclock: tuple[int, int]


def special_areas() -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5] in ("[vdso]", "[vvar]", "[vvar_vclock]"):
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            found[fields[5].strip("[]")] = (lo, hi)
    return found


def host_facts(build_dir: Path) -> Host:
    exe = build_dir / "restore_cpuinfo"
    if not exe.exists():
        build_c(CPROGS / "restore_cpuinfo.c", exe, "-O2")
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True, timeout=60)
    facts = {k: int(v) for k, v in (line.split() for line in out.stdout.splitlines())}
    spans = special_areas()
    vdso = spans["vdso"]
    return Host(
        xcr0=facts["xcr0"],
        xsave_size=facts["xsave_size"],
        avx_offset=facts["avx_offset"],
        cpuid={k: v for k, v in facts.items() if k.startswith("cpuid_")},
        vdso=vdso,
        vdso_hash=py_mxh64(ctypes.string_at(vdso[0], vdso[1] - vdso[0])),
        vvar=spans.get("vvar", (0, 0)),
        vvar_vclock=spans.get("vvar_vclock", (0, 0)),
    )


# ------------------------------------------------------------------ defaults


def default_xstate(host: Host, xstate_bv: int = 3) -> bytes:
    """A sane XSAVE area (standard form): x87 and SSE at their reset values."""
    x = bytearray(host.xsave_size)
    struct.pack_into("<H", x, 0, 0x37F)  # fcw
    struct.pack_into("<II", x, 24, 0x1F80, 0xFFFF)  # mxcsr, mxcsr_mask
    struct.pack_into("<Q", x, 512, xstate_bv)
    return bytes(x)


def default_sigactions() -> list[dict[str, int]]:
    return [{"handler": 0, "flags": 0, "restorer": 0, "mask": 0} for _ in range(64)]


def special_area_list(host: Host) -> list[Area]:
    out = [Area(host.vdso[0], host.vdso[1], PROT_R | PROT_X, A.VDSO, b"[vdso]")]
    if host.vvar[1]:
        out.append(Area(host.vvar[0], host.vvar[1], PROT_R, A.VVAR, b"[vvar]"))
    if host.vvar_vclock[1]:
        out.append(
            Area(host.vvar_vclock[0], host.vvar_vclock[1], PROT_R, A.VVAR_VCLOCK, b"[vvar_vclock]")
        )
    return out


def base_process(host: Host, **fields: object) -> dict[str, object]:
    p: dict[str, object] = {
        "pid": 4242,
        "ppid": 1,
        "umask": 0o022,
        "xsave_size": host.xsave_size,
        "comm": b"tiny",
        "xfeatures": host.xcr0,
        **host.cpuid,
        "auxv_words": 4,
        "auxv": (AT_PAGESZ, PAGE, AT_NULL, 0),
        "rlimits": (),
        "itimers": (),
        "altstack_flags": SS_DISABLE,
        "vdso": host.vdso,
        "vdso_hash": host.vdso_hash,
        "vvar": host.vvar,
        "vvar_vclock": host.vvar_vclock,
        "exe": b"/tiny",
        "threads": 1,
    }
    p.update(fields)
    return p


def base_regs(rip: int, rsp: int, **fields: int) -> dict[str, int]:
    regs = {n: 0 for n in F.REG_NAMES}
    regs.update(rip=rip, rsp=rsp, cs=USER_CS, ss=USER_DS, eflags=0x202)
    regs.update(fields)
    return regs


def sorted_areas(areas: list[Area]) -> list[Area]:
    return sorted(areas, key=lambda a: a.start)


# ------------------------------------------------------------------ the tiny program

CODE = 0x400000
STACK_LO = 0x7FF000000000
STACK_HI = STACK_LO + 0x21000
TINY_STATUS = 7
TINY_TEXT = b"restored\n"


def tiny_code(text: bytes = TINY_TEXT, status: int = TINY_STATUS) -> bytes:
    """write(1, text, len); exit_group(status) -- position independent."""
    code = bytearray()
    code += b"\x48\x8d\x35" + b"\0\0\0\0"  # lea text(%rip), %rsi  (patched below)
    code += b"\xbf\x01\x00\x00\x00"  # mov $1, %edi
    code += b"\xba" + struct.pack("<I", len(text))  # mov $len, %edx
    code += b"\xb8\x01\x00\x00\x00"  # mov $SYS_write, %eax
    code += b"\x0f\x05"  # syscall
    code += b"\xbf" + struct.pack("<I", status)  # mov $status, %edi
    code += b"\xb8\xe7\x00\x00\x00"  # mov $SYS_exit_group, %eax
    code += b"\x0f\x05"  # syscall
    code += b"\x0f\x0b"  # ud2
    struct.pack_into("<i", code, 3, len(code) - 7)  # rel32 from the end of the lea
    return bytes(code + text)


def pad_pages(data: bytes) -> bytes:
    return data + bytes(-len(data) % PAGE)


def tiny_image(host: Host, code: bytes | None = None) -> Image:
    text = pad_pages(tiny_code() if code is None else code)
    stack_top = bytearray(PAGE)
    stack_top[-8:] = b"stacktop"
    areas = [
        Area(CODE, CODE + len(text), PROT_R | PROT_X, 0, b"/tiny", [(CODE, text)]),
        Area(
            STACK_LO,
            STACK_HI,
            PROT_R | PROT_W,
            A.STACK,
            b"[stack]",
            [(STACK_HI - PAGE, bytes(stack_top))],
        ),
        *special_area_list(host),
    ]
    sp = STACK_HI - 64
    process = base_process(
        host,
        start_code=CODE,
        end_code=CODE + len(text),
        start_data=CODE + len(text),
        end_data=CODE + len(text),
        start_brk=CODE + len(text) + PAGE,
        brk=CODE + len(text) + PAGE,
        start_stack=sp,
        arg_start=sp,
        arg_end=sp,
        env_start=sp,
        env_end=sp,
    )
    return Image(
        process=process,
        regs=base_regs(CODE, sp),
        xstate=default_xstate(host),
        sigactions=default_sigactions(),
        areas=sorted_areas(areas),
    )


# ------------------------------------------------------------------ ELF programs


@dataclass(frozen=True)
class Segment:
    vaddr: int
    memsz: int
    prot: int
    data: bytes  # file bytes, from vaddr


def elf_segments(path: Path) -> tuple[int, list[Segment]]:
    """Entry point and PT_LOAD segments of a static, non-PIE x86-64 ELF file."""
    raw = path.read_bytes()
    if raw[:4] != b"\x7fELF" or raw[4] != 2:
        raise ValueError(f"{path}: not a 64-bit ELF file")
    entry, phoff = struct.unpack_from("<QQ", raw, 24)
    phentsize, phnum = struct.unpack_from("<HH", raw, 54)
    segments = []
    for i in range(phnum):
        p_type, p_flags, p_offset, p_vaddr, _, p_filesz, p_memsz, _ = struct.unpack_from(
            "<IIQQQQQQ", raw, phoff + i * phentsize
        )
        if p_type != 1:  # PT_LOAD
            continue
        prot = (PROT_R if p_flags & 4 else 0) | (PROT_W if p_flags & 2 else 0)
        prot |= PROT_X if p_flags & 1 else 0
        segments.append(Segment(p_vaddr, p_memsz, prot, raw[p_offset : p_offset + p_filesz]))
    return entry, segments


def segment_area(seg: Segment, name: bytes) -> Area:
    start = seg.vaddr - seg.vaddr % PAGE
    end = seg.vaddr + seg.memsz
    end += -end % PAGE
    data = bytes(seg.vaddr - start) + seg.data
    data = pad_pages(data)
    return Area(start, end, seg.prot, A.FILE, name, [(start, data)] if data.strip(b"\0") else [])


# ------------------------------------------------------------------ the payload program

PAYLOAD_BASE = 0x10000000
HEAP_LO, HEAP_HI = 0x10200000, 0x10220000
PAYLOAD_FLAGS = ("-O1", "-static", "-nostdlib", "-fno-pie", "-no-pie", "-fno-stack-protector")
PAYLOAD_FLAGS2 = ("-fcf-protection=none", "-ffreestanding", "-fno-builtin", "-Wall", "-Wextra")
SA_SIGINFO, SA_ONSTACK, SA_RESTORER = 0x4, 0x08000000, 0x04000000
SIGHUP, SIGUSR1, SIGUSR2, SIGSYS = 1, 10, 12, 31
RSEQ_SIG = 0x53053053
CMDLINE = b"payload\0--restored\0"
ENVIRON = b"MOSIX=restored\0"


def build_payload(build_dir: Path) -> Path:
    exe = build_dir / "restore_payload"
    if not exe.exists():
        link = [f"-Wl,-Ttext-segment={PAYLOAD_BASE:#x}", "-Wl,--build-id=none"]
        flags = (*PAYLOAD_FLAGS, *PAYLOAD_FLAGS2, "-Werror", *link)
        build_c(CPROGS / "restore_payload.c", exe, *flags)
    return exe


def elf_symbols(path: Path) -> dict[str, int]:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True, timeout=60)
    symbols = {}
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) == 3:
            symbols[fields[2]] = int(fields[0], 16)
    return symbols


@dataclass
class Payload:
    image: Image
    symbols: dict[str, int]


def payload_image(host: Host, exe: Path, *, requests: int = 0, avx: bool = False) -> Payload:
    """The payload program in an image with every piece of state set to something
    a test can recognise.  ``requests``: r15's bits (see restore_payload.c)."""
    entry, segments = elf_segments(exe)
    sym = elf_symbols(exe)
    areas = [segment_area(s, b"/payload") for s in segments]
    heap = bytearray(PAGE)
    heap[:8] = b"heap!!!!"
    areas.append(
        Area(HEAP_LO, HEAP_HI, PROT_R | PROT_W, A.HEAP, b"[heap]", [(HEAP_LO, bytes(heap))])
    )
    top = bytearray(PAGE)
    strings = CMDLINE + ENVIRON
    top[PAGE - len(strings) :] = strings
    arg_start = STACK_HI - len(strings)
    env_start = arg_start + len(CMDLINE)
    areas.append(
        Area(
            STACK_LO,
            STACK_HI,
            PROT_R | PROT_W,
            A.STACK,
            b"[stack]",
            [(STACK_HI - PAGE, bytes(top))],
        )
    )
    areas += special_area_list(host)
    sp = STACK_HI - 2 * PAGE
    itimers = [0] * 12
    itimers[2] = 1000  # ITIMER_REAL: 1000 s from now, no interval
    itimers[4:8] = [5, 0, 100, 0]  # ITIMER_VIRTUAL: 100 s, then every 5 s
    text_end = max(s.vaddr + s.memsz for s in segments if s.prot & PROT_X)
    data_end = max(s.vaddr + s.memsz for s in segments)
    process = base_process(
        host,
        comm=b"payload-test",
        tid_addr=sym["payload_tid"],
        rseq_addr=sym["payload_rseq"],
        rseq_len=32,
        rseq_sig=RSEQ_SIG,
        robust_list=sym["payload_robust"],
        robust_len=24,
        start_code=PAYLOAD_BASE,
        end_code=text_end,
        start_data=text_end,
        end_data=data_end,
        start_brk=HEAP_LO,
        brk=HEAP_HI,
        start_stack=sp,
        arg_start=arg_start,
        arg_end=env_start,
        env_start=env_start,
        env_end=STACK_HI,
        auxv_words=6,
        auxv=(AT_PAGESZ, PAGE, 16, 0x1234, AT_NULL, 0),
        itimers=itimers,
        altstack_sp=sym["payload_altstack"],
        altstack_size=16384,
        altstack_flags=0,
        sigmask=(1 << (SIGUSR2 - 1)) | (1 << (SIGHUP - 1)),
    )
    sigactions = default_sigactions()
    sigactions[SIGUSR1 - 1] = {
        "handler": sym["payload_usr1"],
        "flags": SA_RESTORER | SA_ONSTACK,
        "restorer": sym["payload_sigreturn"],
        "mask": 1 << (SIGUSR2 - 1),
    }
    sigactions[SIGUSR2 - 1] = {"handler": 1, "flags": SA_RESTORER, "restorer": 0, "mask": 0}
    sigactions[SIGSYS - 1] = {
        "handler": sym["payload_sigsys"],
        "flags": SA_RESTORER | SA_SIGINFO,
        "restorer": sym["payload_sigreturn"],
        "mask": 0,
    }
    regs = base_regs(entry, sp, eflags=0x203, fs_base=sym["payload_tls"], gs_base=0x12345000)
    for i, name in enumerate(("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9")):
        regs[name] = 0x1111111111111111 * (i + 1) & ((1 << 64) - 1)
    regs.update(r10=0xA0A0A0A0A0A0A0A0, r11=0xB0B0B0B0B0B0B0B0, r12=0xC0C0C0C0C0C0C0C0)
    regs.update(r13=0xD0D0D0D0D0D0D0D0, r14=0xE0E0E0E0E0E0E0E0, r15=requests | (avx << 1))
    xstate = bytearray(default_xstate(host, 7 if avx else 3))
    struct.pack_into("<H", xstate, 0, 0x27F)  # fcw: 53-bit precision
    struct.pack_into("<I", xstate, 24, 0x1FA0)  # mxcsr with the precision flag
    struct.pack_into("<QQ", xstate, 160, 0x1122334455667788, 0x99AABBCCDDEEFF00)  # xmm0
    if avx:
        struct.pack_into("<QQ", xstate, host.avx_offset, 0x0123456789ABCDEF, 0xFEDCBA9876543210)
    image = Image(
        process=process,
        regs=regs,
        xstate=bytes(xstate),
        sigactions=sigactions,
        areas=sorted_areas(areas),
        options=b"argv0=payload\n",
    )
    return Payload(image, sym)


def parse_payload_output(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """The payload's key=value lines and its /proc dumps."""
    values: dict[str, str] = {}
    dumps: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("<<"):
            body = []
            for inner in lines:
                if inner == ">>":
                    break
                body.append(inner)
            dumps[line[2:]] = "\n".join(body)
        elif "=" in line:
            key, _, value = line.partition("=")
            values[key] = value
    return values, dumps


# ------------------------------------------------------------------ reading images


def parse_records(data: bytes) -> list[tuple[int, bytes]]:
    """The records of a well-formed image (for tests that use a captured one)."""
    at = F.FILE_HEADER.size
    out = []
    while at < len(data):
        head = F.RECORD_HEADER.unpack(data[at : at + F.RECORD_HEADER.size])
        at += F.RECORD_HEADER.size
        length = int(head["length"])  # type: ignore[call-overload]
        out.append((int(head["kind"]), data[at : at + length]))  # type: ignore[call-overload]
        at += length
    return out


@dataclass(frozen=True)
class FileEntry:
    fd: int
    kind: int
    flags: int
    offset: int
    path: str


def file_entries(data: bytes) -> list[FileEntry]:
    entries = []
    for kind, payload in parse_records(data):
        if kind == K.FILE:
            f = F.FILE.unpack(payload)
            path = payload[F.FILE.size :].decode(errors="surrogateescape")
            entries.append(
                FileEntry(int(f["fd"]), int(f["kind"]), int(f["flags"]), int(f["offset"]), path)  # type: ignore[call-overload]
            )
    return entries
