"""Property tests of the mosrun grammar (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mosix.arguments import MosrunArgs, UsageError, format_args, format_timespec, parse

JOBIDS = {"sim": 7, "render": 12}

small = st.integers(min_value=0, max_value=10**6)
positive = st.integers(min_value=1, max_value=10**6)
label = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True)
host = st.builds(lambda parts: ".".join(parts), st.lists(label, min_size=1, max_size=3))
octet = st.integers(min_value=0, max_value=255)
address = st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", octet, octet, octet, octet)
path_part = st.from_regex(r"[A-Za-z0-9_.,@=:-]{1,12}", fullmatch=True).filter(
    lambda s: ".." not in s
)
abs_path = st.builds(
    lambda parts: "/" + "/".join(parts), st.lists(path_part, min_size=1, max_size=4)
)
file_name = st.one_of(path_part, abs_path).filter(lambda s: not s.startswith("-"))
private_dir = abs_path.filter(
    lambda d: not any(d == r or d.startswith(r + "/") for r in ("/etc", "/proc", "/sys", "/dev"))
)


@st.composite
def candidate(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["node", "nodes", "addr", "host"]))
    if kind == "node":
        return str(draw(positive))
    if kind == "nodes":
        a, b = sorted((draw(positive), draw(positive)))
        return f"{a}-{b}"
    if kind == "addr":
        return draw(address)
    return draw(host)


placement = st.one_of(
    st.just([]),
    st.builds(lambda h: [f"-r{h}"], host),
    st.builds(lambda a: [f"-{a}"], address),
    st.builds(lambda n: [f"-{n}"], positive),
    st.just(["-h"]),
    st.just(["-b"]),
    st.builds(lambda cs: ["-j" + ",".join(cs)], st.lists(candidate(), min_size=1, max_size=4)),
)

timespec = st.one_of(
    st.builds(format_timespec, small),
    st.builds(lambda d, h, m: f"{d}:{h:02}:{m:02}", small, st.integers(0, 23), st.integers(0, 59)),
    st.builds(lambda h, m: f"{h}:{m:02}", small, st.integers(0, 59)),
    st.builds(lambda d: f"{d}d", small),
    st.builds(lambda h: f"{h}h", small),
    st.builds(lambda m: f"{m}m", small),
    st.builds(lambda d, h: f"{d}d{h}h", small, st.integers(0, 23)),
    st.builds(lambda d, m: f"{d}d{m}m", small, st.integers(0, 59)),
    st.builds(lambda h, m: f"{h}h{m}m", small, st.integers(0, 59)),
)

location_option = st.one_of(
    st.sampled_from(["-F", "-L", "-l", "-G", "-q", "-Q"]),
    st.builds(lambda n: f"-G{n}", small),
    st.builds(lambda t: f"-D{t}", timespec),
    st.builds(lambda n: f"-A{n}", positive),
    st.builds(lambda n: f"-N{n}", small),
    st.builds(lambda q, n: f"-{q}{n}", st.sampled_from("qQ"), small),
    st.builds(lambda n: f"-P{n}", positive),
    st.builds(lambda j: f"-J{j}", st.one_of(st.builds(str, small), st.sampled_from(list(JOBIDS)))),
)

program_option = st.one_of(
    st.sampled_from(["-c", "-n", "-e", "-u", "-w", "-t", "-T", "-i", "-E", "-M"]),
    st.builds(lambda n: f"-m{n}", small),
    st.builds(lambda n: f"-d{n}", st.integers(0, 10000)),
    st.builds(lambda k, d: f"-{k}{d}", st.sampled_from("EM"), abs_path),
    st.builds(lambda f: f"-C{f}", file_name),
    st.builds(lambda d: f"-X{d}", private_dir),
)


def no_batch_conflict(words: list[str]) -> bool:
    return not (any(w.startswith("-E") for w in words) and any(w.startswith("-M") for w in words))


@st.composite
def valid_argv(draw: st.DrawFn) -> list[str]:
    words = draw(placement) + draw(st.lists(location_option, max_size=5))
    mode = draw(st.sampled_from(["run", "commands", "recover", "inspect"]))
    if draw(st.booleans()):
        words.insert(0, "-g")
    if mode == "inspect":
        return [w for w in words if w == "-g"] + [f"-I{draw(file_name)}"]
    if mode == "recover":
        words.append(f"-R{draw(file_name)}")
        fds = draw(st.lists(st.integers(0, 1000), unique=True, max_size=3))
        if fds:
            names = [draw(file_name) for _ in fds]
            sep = draw(st.sampled_from(["", "@"]))
            if sep or any("," in n for n in names):
                sep = "#" if any("@" in n for n in names) else "@"
                words.append(
                    "-O" + "".join(f"{sep}{fd}={n}" for fd, n in zip(fds, names, strict=True))
                )
            else:
                words.append("-O" + ",".join(f"{fd}={n}" for fd, n in zip(fds, names, strict=True)))
        return words
    words += draw(st.lists(program_option, max_size=6).filter(no_batch_conflict))
    draw(st.randoms()).shuffle(words)
    if mode == "commands":
        failed = draw(st.one_of(st.just(""), st.builds(lambda f: "," + f, file_name)))
        commands = draw(file_name.filter(lambda f: "," not in f))
        return [*words, f"-S{draw(st.integers(1, 30000))}", commands + failed]
    program = draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4))
    if program[0].startswith("-"):
        words.append("--")
    return words + program


@settings(max_examples=400, deadline=None)
@given(valid_argv())
def test_valid_command_lines_parse_and_round_trip(argv: list[str]) -> None:
    args = parse(argv, jobids=JOBIDS.get)
    words = format_args(args)
    assert parse(words, jobids=JOBIDS.get) == args
    assert format_args(parse(words, jobids=JOBIDS.get)) == words


# Words made of the characters that matter to the grammar, plus anything at all.
grammar_char = st.sampled_from(list("-0123456789.,:=@/dhmrjbGDAqQPJSROIXCEMzeuwtTiLlFcng %"))
grammar_word = st.one_of(
    st.text(grammar_char, max_size=12).map(lambda s: "-" + s),
    st.text(grammar_char, max_size=12),
    st.text(max_size=8),
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(grammar_word, max_size=8))
def test_random_argv_gives_a_value_or_a_usage_error(argv: list[str]) -> None:
    try:
        args = parse(argv, jobids=JOBIDS.get)
    except UsageError as e:
        message = str(e)
        assert message and "\n" not in message
        return
    assert isinstance(args, MosrunArgs)
    assert parse(format_args(args), jobids=JOBIDS.get) == args
