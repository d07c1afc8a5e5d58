"""The text of ``csrc/generated/ckpt_format.h`` and ``docs/IMAGE.md``, from mosix/ckpt/format.py.

``python -m mosix.generate`` writes them (:mod:`mosix.generate`).
"""

from __future__ import annotations

from mosix.ckpt import format as fmt
from mosix.codegen import c_banner, doc_banner

HEADER = "csrc/generated/ckpt_format.h"
DOC = "docs/IMAGE.md"
SOURCE = "mosix/ckpt/format.py"


def _c_field(f: fmt.Field) -> str:
    ctype = "char" if f.ctype == "char" else f.ctype
    array = f"[{f.count}]" if f.count > 1 else ""
    doc = f" /* {f.doc} */" if f.doc else ""
    return f"    {ctype} {f.name}{array};{doc}"


def header_text() -> str:
    out = [
        c_banner(SOURCE),
        "/* ckpt_format.h - the image format: change the definition and regenerate. */",
        "#ifndef MOSIX_CKPT_FORMAT_H",
        "#define MOSIX_CKPT_FORMAT_H",
        "",
        "#include <stdint.h>",
        "",
        f'#define MOSIX_CKPT_MAGIC "{fmt.MAGIC.decode()}"',
        f"#define MOSIX_CKPT_VERSION {fmt.VERSION}",
        f"#define MOSIX_CKPT_OLDEST_VERSION {fmt.OLDEST_VERSION}",
        f"#define MOSIX_CKPT_ARCH {fmt.ARCH_X86_64}",
        f"#define MOSIX_CKPT_PAGE_SIZE {fmt.PAGE_SIZE}",
        f'#define MOSIX_CKPT_FAILED_PREFIX "{fmt.FAILED_PREFIX.decode()}"',
        f"#define MOSIX_CKPT_MAX_RECORD_BYTES {fmt.MAX_RECORD_BYTES}ull",
        f"#define MOSIX_CKPT_MAX_PAGES_PER_RECORD {fmt.MAX_PAGES_PER_RECORD}ull",
        f"#define MOSIX_CKPT_PRIVATE_PART_BYTES {fmt.PRIVATE_PART_BYTES}ull",
        f"#define MOSIX_CKPT_MAX_PATH {fmt.MAX_PATH}",
        f"#define MOSIX_CKPT_MAX_XSAVE {fmt.MAX_XSAVE}",
        f"#define MOSIX_CKPT_MAX_AREAS {fmt.MAX_AREAS}",
        f"#define MOSIX_CKPT_MAX_FILES {fmt.MAX_FILES}",
        f"#define MOSIX_CKPT_MAX_THREADS {fmt.MAX_THREADS}",
        f"#define MOSIX_CKPT_MAX_SIGNALS {fmt.MAX_SIGNALS}",
        f"#define MOSIX_CKPT_MAX_TIMERS {fmt.MAX_TIMERS}",
        f"#define MOSIX_CKPT_MAX_MAPFILES {fmt.MAX_MAPFILES}",
        f"#define MOSIX_CKPT_MAX_TCB_TID_OFFSET {fmt.MAX_TCB_TID_OFFSET:#x}",
        f"#define MOSIX_CKPT_SIGINFO_SIZE {fmt.SIGINFO_SIZE}",
        f"#define MOSIX_CKPT_USER_LOW {fmt.USER_LOW:#x}ull",
        f"#define MOSIX_CKPT_USER_HIGH {fmt.USER_HIGH:#x}ull",
        f"#define MOSIX_CKPT_RESTORER_BASE {fmt.RESTORER_BASE:#x}ull",
        f"#define MOSIX_CKPT_RESTORER_SPAN {fmt.RESTORER_SPAN:#x}ull",
        f"#define MOSIX_CKPT_TRAMPOLINE {fmt.TRAMPOLINE:#x}ull",
        f"#define MOSIX_CKPT_TRAMPOLINE_SPAN {fmt.TRAMPOLINE_SPAN:#x}ull",
        "",
    ]
    for enum_cls, prefix in (
        (fmt.Kind, "MOSIX_CKPT_KIND_"),
        (fmt.FileKind, "MOSIX_CKPT_FILE_"),
        (fmt.PrivateKind, "MOSIX_CKPT_PRIVATE_"),
        (fmt.AreaFlag, "MOSIX_CKPT_AREA_"),
        (fmt.ShimKind, "MOSIX_CKPT_SHIM_"),
    ):
        out.append(f"/* {enum_cls.__name__} */")
        out += [f"#define {prefix}{m.name} {int(m):#x}" for m in enum_cls]  # type: ignore[attr-defined]
        out.append("")
    for s in fmt.STRUCTS:
        out.append(f"/* {s.doc} */")
        out.append(f"struct mosix_ckpt_{s.name} {{")
        out += [_c_field(f) for f in s.fields]
        out.append("};")
        out.append(
            f'_Static_assert(sizeof(struct mosix_ckpt_{s.name}) == {s.size}, "{s.name} layout");'
        )
        out.append("")
    out.append("#endif")
    return "\n".join(out) + "\n"


def doc_text() -> str:
    out = [
        doc_banner(SOURCE),
        "",
        "# The checkpoint image format",
        "",
        (fmt.__doc__ or "").split("\n\n", 1)[1].strip(),
        "",
        f"Version {fmt.VERSION} (version {fmt.OLDEST_VERSION} images are still read); "
        f"magic `{fmt.MAGIC.decode()}`; page size {fmt.PAGE_SIZE}. "
        f"A checkpoint that could not be taken (open pipes or sockets, set-id) is a "
        f"short text file beginning `{fmt.FAILED_PREFIX.decode()}`: the one-line reason.",
        "",
        "Checksum: mxh64 (csrc/common/ckpt_hash.h; Python: mosix/native/checksum.py).",
        "",
        "Limits a reader enforces (hostile images): one record's payload "
        f"≤ {fmt.MAX_RECORD_BYTES >> 20} MiB, paths ≤ {fmt.MAX_PATH} bytes, "
        f"XSAVE ≤ {fmt.MAX_XSAVE} bytes, ≤ {fmt.MAX_AREAS} areas, ≤ {fmt.MAX_FILES} files, "
        f"≤ {fmt.MAX_THREADS} threads, ≤ {fmt.MAX_SIGNALS} pending signals, "
        f"≤ {fmt.MAX_TIMERS} POSIX timers, ≤ {fmt.MAX_MAPFILES} referenced files, "
        f"areas page-aligned, ascending, not overlapping, inside "
        f"[{fmt.USER_LOW:#x}, {fmt.USER_HIGH:#x}).",
        "",
        "## Records, in order",
        "",
        "| kind | name | repeats | payload |",
        "|---:|---|---|---|",
    ]
    docs = {
        fmt.Kind.PROCESS: "`process` struct",
        fmt.Kind.OPTIONS: "text, `KEY=VALUE` lines: "
        + ", ".join(f"`{k}`" for k in fmt.OPTION_KEYS),
        fmt.Kind.CWD: "the path of the current directory",
        fmt.Kind.FILE: "`file` struct, then the path",
        fmt.Kind.FILEDATA: "`filedata` struct, then bytes",
        fmt.Kind.PRIVATE: "`private` struct, then the path, then a file's contents",
        fmt.Kind.REGS: "`regs` struct",
        fmt.Kind.XSTATE: "XSAVE area, standard layout, `xsave_size` bytes",
        fmt.Kind.SIGACTIONS: "64 x `sigaction` struct",
        fmt.Kind.THREAD: "`thread` struct, then its XSAVE area (`xsave_size` bytes)",
        fmt.Kind.SIGNAL: "`signal` struct",
        fmt.Kind.TIMER: "`timer` struct",
        fmt.Kind.MAPFILE: "`mapfile` struct, then the path",
        fmt.Kind.AREA: "`area` struct, then the name",
        fmt.Kind.PAGES: "`pages` struct, then `npages` x page",
        fmt.Kind.END: "`end` struct",
        fmt.Kind.PRE_AREA: "`area` struct, then the name (migration streams only)",
        fmt.Kind.PRE_PAGES: "`pages` struct, then `npages` x page (migration streams only)",
    }
    in_order = [k for k in fmt.ORDER if k is not fmt.Kind.END]
    in_order += [fmt.Kind.PAGES, fmt.Kind.END, *fmt.PRECOPY]
    for k in in_order:
        rep = "yes" if k in fmt.REPEATED else "once"
        out.append(f"| {int(k)} | {k.name} | {rep} | {docs[k]} |")
    for enum_cls in (fmt.FileKind, fmt.PrivateKind, fmt.AreaFlag, fmt.ShimKind):
        out += ["", f"## {enum_cls.__name__}", ""]
        out += [f"* `{m.name}` = {int(m):#x}" for m in enum_cls]  # type: ignore[attr-defined]
    for s in fmt.STRUCTS:
        offsets = s.offsets()
        out += ["", f"## struct `{s.name}` ({s.size} bytes)", "", s.doc, ""]
        out += ["| offset | field | type | meaning |", "|---:|---|---|---|"]
        for f in s.fields:
            t = f.ctype + (f"[{f.count}]" if f.count > 1 else "")
            out.append(f"| {offsets[f.name]} | `{f.name}` | {t} | {f.doc} |")
    return "\n".join(out) + "\n"


def outputs() -> dict[str, str]:
    return {HEADER: header_text(), DOC: doc_text()}
