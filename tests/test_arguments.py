"""The mosrun grammar: every option form of the manual and every validation rule."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from mosix.arguments import (
    INHERITED_FIELDS,
    Addresses,
    AmongCandidates,
    BatchJob,
    BatchKind,
    CommandsFile,
    HostName,
    MosrunArgs,
    NodeNumbers,
    OnAddress,
    OnBest,
    OnHome,
    OnHost,
    OnNode,
    QueueMode,
    QueueRequest,
    Reopen,
    Unsupported,
    UsageError,
    WhereParent,
    format_args,
    inherit,
    inherited_words,
    parse,
    parse_inherited_words,
    read_jobids,
)

JOBIDS = {"sim": 7, "render": 12}


def p(*words: str) -> MosrunArgs:
    return parse(list(words), jobids=JOBIDS.get)


def error(*words: str) -> str:
    with pytest.raises(UsageError) as info:
        p(*words)
    return str(info.value)


def roundtrip(args: MosrunArgs) -> None:
    assert p(*format_args(args)) == args


# ------------------------------------------------------------- placement


@pytest.mark.parametrize(
    ("word", "placement"),
    [
        ("-rnode2", OnHost("node2")),
        ("-rhost.example.org", OnHost("host.example.org")),
        ("-10.0.0.7", OnAddress(IPv4Address("10.0.0.7"))),
        ("-3", OnNode(3)),
        ("-h", OnHome()),
        ("-b", OnBest()),
        ("-j1-4", AmongCandidates((NodeNumbers(1, 4),))),
        (
            "-j1-2,7,node-a,10.0.0.1-10.0.0.9,10.1.1.1",
            AmongCandidates(
                (
                    NodeNumbers(1, 2),
                    NodeNumbers(7, 7),
                    HostName("node-a"),
                    Addresses(IPv4Address("10.0.0.1"), IPv4Address("10.0.0.9")),
                    Addresses(IPv4Address("10.1.1.1"), IPv4Address("10.1.1.1")),
                )
            ),
        ),
    ],
)
def test_placement_forms(word: str, placement: object) -> None:
    args = p(word, "prog")
    assert args.placement == placement
    assert args.program == ("prog",)
    roundtrip(args)


def test_default_placement_is_where_the_parent_runs() -> None:
    assert p("prog").placement == WhereParent()


def test_same_placement_twice_is_fine_but_two_differ_is_an_error() -> None:
    assert p("-b", "-b", "prog").placement == OnBest()
    assert error("-b", "-h", "prog") == "-h: conflicts with -b (give one placement)"
    assert error("-rnode1", "-3", "prog") == "-3: conflicts with -rnode1 (give one placement)"
    assert "conflicts" in error("-j1-2", "-10.0.0.1", "prog")


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["-r", "node"], "-r: host name missing"),
        (["-rbad_host", "p"], "-rbad_host: 'bad_host' is not a valid host name"),
        (["-r-x", "p"], "-r-x: '-x' is not a valid host name"),
        (["-1.2.3", "p"], "-1.2.3: '1.2.3' is not an IPv4 address"),
        (["-1.2.3.256", "p"], "-1.2.3.256: '1.2.3.256' is not an IPv4 address"),
        (["-0", "p"], "-0: the node number must be a whole number from 1 to 2147483647"),
        (["-12ab", "p"], "-12ab: not a node number or IPv4 address"),
        (["-j", "p"], "-j: list of hosts missing"),
        (["-j1,,2", "p"], "-j1,,2: empty entry in the list of hosts"),
        (["-j5-2", "p"], "-j5-2: range '5-2' ends before it begins"),
        (
            ["-j10.0.0.9-10.0.0.1", "p"],
            "-j10.0.0.9-10.0.0.1: range '10.0.0.9-10.0.0.1' ends before it begins",
        ),
        (["-j1.2.3", "p"], "-j1.2.3: '1.2.3' is not an IPv4 address"),
        (
            ["-jbad_host", "p"],
            "-jbad_host: 'bad_host' is not a host name, IPv4 address or node number",
        ),
    ],
)
def test_placement_errors(words: list[str], message: str) -> None:
    assert error(*words) == message


# ----------------------------------------------------------- simple flags


@pytest.mark.parametrize(
    ("words", "name", "value"),
    [
        (["-F"], "force_elsewhere", True),
        (["-L"], "auto_migrate", False),
        (["-l"], "auto_migrate", True),
        (["-L", "-l"], "auto_migrate", True),
        (["-l", "-L"], "auto_migrate", False),
        (["-c"], "io_aware", False),
        (["-n"], "io_aware", True),
        (["-c", "-n"], "io_aware", True),
        (["-e"], "unsupported", Unsupported.ENOSYS),
        (["-u"], "unsupported", Unsupported.KILL),
        (["-w"], "unsupported", Unsupported.WARN),
        (["-w", "-u"], "unsupported", Unsupported.KILL),
        (["-t"], "local_time", True),
        (["-T"], "local_time", False),
        (["-t", "-T"], "local_time", False),
        (["-i"], "exclusive_stdin", True),
        (["-g"], "admin", True),
    ],
)
def test_flags(words: list[str], name: str, value: object) -> None:
    args = p(*words, "prog")
    assert getattr(args, name) == value
    roundtrip(args)


def test_unset_flags_are_none_so_they_can_be_inherited() -> None:
    args = p("prog")
    for name in INHERITED_FIELDS:
        assert getattr(args, name) is None, name


@pytest.mark.parametrize("word", ["-hx", "-bfast", "-Fyes", "-L1", "-ee", "-gg", "-i0"])
def test_flags_take_no_argument(word: str) -> None:
    assert error(word, "prog") == f"{word}: unknown option (-{word[1]} takes no argument)"


@pytest.mark.parametrize("word", ["-Y", "-x", "-o5", "-%", "-K"])
def test_unknown_options(word: str) -> None:
    assert error(word, "prog") == f"{word}: unknown option"


# ------------------------------------------------------ numeric arguments


@pytest.mark.parametrize(
    ("word", "name", "value"),
    [
        ("-G", "grid_class", 1),
        ("-G0", "grid_class", 0),
        ("-G5", "grid_class", 5),
        ("-A30", "checkpoint_minutes", 30),
        ("-N0", "checkpoint_max", 0),
        ("-N3", "checkpoint_max", 3),
        ("-P4", "parallel", 4),
        ("-m2048", "memory_mb", 2048),
        ("-d0", "decay", 0),
        ("-d10000", "decay", 10000),
        ("-J5", "job_id", 5),
        ("-J0", "job_id", 0),
        ("-Jsim", "job_id", 7),
        ("-Jrender", "job_id", 12),
    ],
)
def test_numeric_options(word: str, name: str, value: int) -> None:
    args = p(word, "prog")
    assert getattr(args, name) == value
    roundtrip(args)


def test_decay_also_takes_a_separate_word_as_in_the_synopsis() -> None:
    assert p("-d", "500", "prog").decay == 500


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("-d10001", "-d: the decay must be a whole number from 0 to 10000"),
        ("-d-1", "-d: the decay must be a whole number from 0 to 10000"),
        ("-dx", "-d: the decay must be a whole number from 0 to 10000"),
        ("-Gx", "-Gx: the class must be a whole number from 0 to 2147483647"),
        ("-G-1", "-G-1: the class must be a whole number from 0 to 2147483647"),
        ("-A", "-A: the interval in minutes must be a whole number from 1 to 2147483647"),
        ("-A0", "-A0: the interval in minutes must be a whole number from 1 to 2147483647"),
        ("-N", "-N: the number of checkpoints must be a whole number from 0 to 2147483647"),
        ("-P0", "-P0: the number of processes must be a whole number from 1 to 2147483647"),
        ("-m", "-m: the memory size in MB must be a whole number from 0 to 2147483647"),
        ("-m1.5", "-m1.5: the memory size in MB must be a whole number from 0 to 2147483647"),
        (
            "-m99999999999",
            "-m99999999999: the memory size in MB must be a whole number from 0 to 2147483647",
        ),
        ("-J", "-J: job ID missing"),
        ("-Jnope", "-Jnope: 'nope' is neither a number nor a token in ~/.jobids"),
        ("-q-3", "-q-3: the priority must be a whole number from 0 to 2147483647"),
        ("-Q1x", "-Q1x: the priority must be a whole number from 0 to 2147483647"),
    ],
)
def test_numeric_errors(word: str, message: str) -> None:
    assert error(word, "prog") == message


def test_decay_missing_at_the_end() -> None:
    assert error("-d") == "-d: the decay must be a whole number from 0 to 10000"


def test_non_ascii_digits_are_refused() -> None:
    assert "whole number" in error("-m\u0661\u0662", "prog")


# ------------------------------------------------------------------ queue


@pytest.mark.parametrize(
    ("word", "queue"),
    [
        ("-q", QueueRequest(QueueMode.KILL_ON_ABORT, None)),
        ("-q0", QueueRequest(QueueMode.KILL_ON_ABORT, 0)),
        ("-q20", QueueRequest(QueueMode.KILL_ON_ABORT, 20)),
        ("-Q", QueueRequest(QueueMode.RUN_ON_ABORT, None)),
        ("-Q70", QueueRequest(QueueMode.RUN_ON_ABORT, 70)),
    ],
)
def test_queue_forms(word: str, queue: QueueRequest) -> None:
    args = p(word, "prog")
    assert args.queue == queue
    roundtrip(args)


# ---------------------------------------------------------------- -D time

NINE_FORMATS = [
    ("1:02:03", (1 * 24 + 2) * 60 + 3),  # DD:HH:MM
    ("02:30", 2 * 60 + 30),  # HH:MM
    ("3d", 3 * 24 * 60),  # DDd
    ("5h", 5 * 60),  # HHh
    ("45m", 45),  # MMm
    ("2d3h4m", (2 * 24 + 3) * 60 + 4),  # DDdHHhMMm
    ("2d3h", (2 * 24 + 3) * 60),  # DDdHHh
    ("2d4m", 2 * 24 * 60 + 4),  # DDdMMm
    ("3h4m", 3 * 60 + 4),  # HHhMMm
]


@pytest.mark.parametrize(("spec", "minutes"), NINE_FORMATS)
def test_duration_nine_formats(spec: str, minutes: int) -> None:
    args = p(f"-D{spec}", "prog")
    assert args.duration_minutes == minutes
    roundtrip(args)


@pytest.mark.parametrize(
    ("spec", "minutes"), [("30h", 30 * 60), ("90m", 90), ("40:00", 40 * 60), ("400d", 400 * 1440)]
)
def test_duration_leading_unit_is_unbounded(spec: str, minutes: int) -> None:
    assert p(f"-D{spec}", "prog").duration_minutes == minutes


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("", "is not a time"),
        ("5", "is not a time"),
        ("1:2:3:4", "is not a time"),
        ("3m2h", "is not a time"),
        ("1d1d", "is not a time"),
        ("h", "is not a time"),
        ("1.5h", "is not a time"),
        ("1:24:00", "hours must be below 24"),
        ("1d24h", "hours must be below 24"),
        ("2:60", "minutes must be below 60"),
        ("1h60m", "minutes must be below 60"),
        ("1d60m", "minutes must be below 60"),
    ],
)
def test_duration_errors(spec: str, why: str) -> None:
    message = error(f"-D{spec}", "prog")
    assert message.startswith(f"-D{spec}: ")
    assert why in message


# ---------------------------------------------- batch jobs, -C, -X, -i, -z


@pytest.mark.parametrize(
    ("word", "batch"),
    [
        ("-E", BatchJob(BatchKind.NATIVE, None)),
        ("-E/scratch/run", BatchJob(BatchKind.NATIVE, "/scratch/run")),
        ("-M", BatchJob(BatchKind.MOSIX, None)),
        ("-M/home/u", BatchJob(BatchKind.MOSIX, "/home/u")),
    ],
)
def test_batch_forms(word: str, batch: BatchJob) -> None:
    args = p(word, "prog")
    assert args.batch == batch
    roundtrip(args)


def test_batch_errors() -> None:
    assert error("-Erel", "prog") == "-Erel: directory must start with '/'"
    assert error("-E", "-M", "prog") == "-M: conflicts with -E (give -E or -M)"


def test_checkpoint_file() -> None:
    args = p("-Cmysave", "-N3", "-A10", "prog")
    assert (args.checkpoint_file, args.checkpoint_max, args.checkpoint_minutes) == ("mysave", 3, 10)
    roundtrip(args)
    assert error("-C", "prog") == "-C: checkpoint file name missing"


def test_private_dirs_attached_separate_and_repeated() -> None:
    args = p("-X/tmp/a", "-X", "/scratch/b/", "-X//var//tmp", "prog")
    assert args.private_dirs == ("/tmp/a", "/scratch/b", "/var/tmp")
    roundtrip(args)
    assert p("-X/tmp/a", "-X/tmp/a", "prog").private_dirs == ("/tmp/a",)


def test_private_dirs_at_most_ten() -> None:
    ten = [f"-X/tmp/d{i}" for i in range(10)]
    assert len(p(*ten, "prog").private_dirs) == 10
    assert error(*ten, "-X/tmp/d10", "prog") == "-X: at most 10 private directories"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tmp/x", "-X: directory must start with '/'"),
        ("/" + "a" * 256, "-X: directory is longer than 256 characters"),
        ("/tmp/../etc", "-X: directory cannot include '..'"),
        ("/tmp/x..y", "-X: directory cannot include '..'"),
        ("/etc", "-X: directory cannot be within /etc"),
        ("/etc/mosix", "-X: directory cannot be within /etc"),
        ("//proc/1", "-X: directory cannot be within /proc"),
        ("/sys/", "-X: directory cannot be within /sys"),
        ("/dev/shm", "-X: directory cannot be within /dev"),
        ("/", "-X: the root directory cannot be private"),
    ],
)
def test_private_dir_rules(path: str, message: str) -> None:
    assert error(f"-X{path}", "prog") == message


def test_private_dir_missing() -> None:
    assert error("-X") == "-X: directory missing"
    assert error("-X", "prog") == "-X: directory must start with '/'"


def test_private_dir_limits_are_exact() -> None:
    longest = "/" + "a" * 255
    assert p(f"-X{longest}", "prog").private_dirs == (longest,)
    assert p("-X/etcetera", "prog").private_dirs == ("/etcetera",)
    assert p("-X/devices", "prog").private_dirs == ("/devices",)


def test_args_from_zero() -> None:
    args = p("-z", "/bin/echo", "echo0", "a")
    assert args.program == ("/bin/echo", "echo0", "a")
    assert args.argv() == ["echo0", "a"]
    assert p("/bin/echo", "a").argv() == ["/bin/echo", "a"]
    assert error("-z", "/bin/echo") == "-z: argument #0 missing after the program name"


# --------------------------------------------------------- program and end


def test_options_end_at_the_program_name() -> None:
    args = p("-e", "prog", "-b", "-X", "--", "-rnode")
    assert args.program == ("prog", "-b", "-X", "--", "-rnode")
    assert args.placement == WhereParent()


def test_double_dash_ends_options_so_a_program_may_start_with_dash() -> None:
    args = p("-e", "--", "-weird", "x")
    assert args.program == ("-weird", "x")
    roundtrip(args)


def test_missing_program() -> None:
    assert error() == "no program given"
    assert error("-b", "-e") == "no program given"
    assert error("-b", "--") == "no program given"


def test_a_lone_dash_is_a_program_name() -> None:
    assert p("-").program == ("-",)


# ------------------------------------------------------------- -S batches


def test_commands_file_forms() -> None:
    args = p("-S4", "-q", "-e", "cmds.txt")
    assert args.commands == CommandsFile(4, "cmds.txt", None)
    assert args.queue == QueueRequest(QueueMode.KILL_ON_ABORT, None)
    roundtrip(args)
    args = p("-S30000", "cmds.txt,failed.txt")
    assert args.commands == CommandsFile(30000, "cmds.txt", "failed.txt")
    roundtrip(args)


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["-S0", "c"], "-S0: maxjobs must be a whole number from 1 to 30000"),
        (["-S30001", "c"], "-S30001: maxjobs must be a whole number from 1 to 30000"),
        (["-S", "c"], "-S: maxjobs must be a whole number from 1 to 30000"),
        (["-S2"], "-S2: commands-file missing"),
        (["-S2", "c", "extra"], "-S2: unexpected 'extra' after the commands-file"),
        (["-S2", ",failed"], "-S2: commands-file missing"),
        (["-S2", "c,"], "-S2: failed-commands file name missing after ','"),
        (["-S2", "-Rf"], "-R: cannot be combined with -S"),
    ],
)
def test_commands_file_errors(words: list[str], message: str) -> None:
    assert error(*words) == message


# ------------------------------------------------------- -R, -O and -I


def test_recover_with_location_options() -> None:
    args = p("-Rsave.3", "-b", "-L", "-J5", "-q10")
    assert args.recover == "save.3"
    assert args.placement == OnBest()
    roundtrip(args)


@pytest.mark.parametrize(
    "word",
    [
        "-m10",
        "-d5",
        "-c",
        "-n",
        "-z",
        "-e",
        "-u",
        "-w",
        "-t",
        "-T",
        "-E",
        "-M",
        "-i",
        "-Cf",
        "-X/tmp/x",
    ],
)
def test_recover_refuses_program_options(word: str) -> None:
    message = error("-Rsave.1", word)
    assert message == (
        f"{word}: program options are not permitted with -R "
        "(they are recovered from the checkpoint)"
    )


def test_recover_takes_no_program() -> None:
    assert error("-Rsave.1", "prog") == "-R: takes no program (got 'prog')"
    assert error("-R") == "-R: checkpoint file name missing"


def test_reopen_forms() -> None:
    args = p("-Rs", "-O1=oldstdout,2=oldstderr,5=tmpfile")
    assert args.reopen == (Reopen(1, "oldstdout"), Reopen(2, "oldstderr"), Reopen(5, "tmpfile"))
    roundtrip(args)
    args = p("-Rs", "-O@1=file,with,commas@2=oldstderr@5=tmpfile")
    assert args.reopen == (
        Reopen(1, "file,with,commas"),
        Reopen(2, "oldstderr"),
        Reopen(5, "tmpfile"),
    )
    roundtrip(args)
    args = p("-Rs", "-O1=a", "-O:3=b:4=c,d")
    assert args.reopen == (Reopen(1, "a"), Reopen(3, "b"), Reopen(4, "c,d"))
    roundtrip(args)


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("-O", "-O: missing fd=file"),
        ("-O@", "-O@: missing fd=file"),
        ("-O1", "-O1: '1' is not fd=file"),
        ("-O1=", "-O1=: '1=' is not fd=file"),
        ("-Ox=f", "-Ox=f: '=f' is not fd=file"),
        ("-O1=a,,2=b", "-O1=a,,2=b: '' is not fd=file"),
        ("-O@a=f", "-O@a=f: a file descriptor must be a whole number from 0 to 2147483647"),
        ("-O1=a,1=b", "-O1=a,1=b: file descriptor 1 given twice"),
    ],
)
def test_reopen_errors(word: str, message: str) -> None:
    assert error("-Rs", word) == message


def test_reopen_only_with_recover() -> None:
    assert error("-O1=x", "prog") == "-O: only applies with -R{file}"


def test_inspect() -> None:
    args = p("-Isave.2")
    assert args.inspect == "save.2"
    roundtrip(args)
    assert error("-I") == "-I: checkpoint file name missing"
    assert error("-Isave.2", "-b") == "-I: takes no other options (got -b)"
    assert error("-b", "-Isave.2") == "-I: takes no other options (got -b)"
    assert error("-Isave.2", "prog") == "-I: takes no program (got 'prog')"


# ------------------------------------------------------------ job tokens


def test_jobids_file(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / ".jobids"
    path.write_text(
        "7 sim\n# comment\n12 render extra words\nbad line\n9999999999999 huge\n3 sim\n"
    )
    assert read_jobids(str(path)) == {"sim": 7, "render": 12}
    assert read_jobids(str(path) + ".missing") == {}


# ----------------------------------------------------------- inheritance


def test_inherited_fields_are_the_manuals_list() -> None:
    # -G -L -l -m -d -c -n -e -u -w -t -T and -J; not -C -N -A or placement.
    outer = p(
        "-G3",
        "-L",
        "-m100",
        "-d50",
        "-c",
        "-w",
        "-t",
        "-J7",
        "-Cf",
        "-N2",
        "-A5",
        "-b",
        "-D1h",
        "-X/tmp/p",
        "-q",
        "prog",
    )
    kept = parse_inherited_words(inherited_words(outer))
    assert kept == MosrunArgs(
        grid_class=3,
        auto_migrate=False,
        memory_mb=100,
        decay=50,
        io_aware=False,
        unsupported=Unsupported.WARN,
        local_time=True,
        job_id=7,
    )


def test_inner_mosrun_overrides_only_what_it_says() -> None:
    outer = p("-G3", "-L", "-e", "-J7", "prog")
    inner = inherit(outer, p("-l", "-u", "prog2"))
    assert inner.grid_class == 3
    assert inner.job_id == 7
    assert inner.auto_migrate is True
    assert inner.unsupported is Unsupported.KILL
    assert inner.program == ("prog2",)


def test_garbage_inherited_words_are_refused_not_half_applied() -> None:
    with pytest.raises(UsageError):
        parse_inherited_words(["-Gx"])
