"""The cluster's configuration: the node map (both styles), [cluster] keys, bad configs."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosix.cluster.nodemap import MapError, Node, NodeMap, parse_map_text
from mosix.node.config import ConfigError, read_config

# ------------------------------------------------------------- map lines


def test_map_lines_give_consecutive_nodes_and_addresses() -> None:
    nodes = parse_map_text(
        """
        # first address count
        1 10.77.0.1 3   # three nodes
        10 192.168.1.254 3
        """
    )
    assert [(n.number, n.address, n.name, n.partition) for n in nodes] == [
        (1, "10.77.0.1", None, 1),
        (2, "10.77.0.2", None, 1),
        (3, "10.77.0.3", None, 1),
        (10, "192.168.1.254", None, 1),
        (11, "192.168.1.255", None, 1),
        (12, "192.168.2.0", None, 1),  # addresses carry over the octet
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("1 10.0.0.1", "line 1: '1 10.0.0.1': expected 'first-node-number address count'"),
        ("\n1 10.0.0.1 2 x", "line 2: '1 10.0.0.1 2 x': expected"),
        ("a 10.0.0.1 2", "line 1: 'a 10.0.0.1 2': node number and count must be numbers"),
        ("1 10.0.0.1 -2", "node number and count must be numbers"),
        ("1 10.0.0.300 2", "line 1: '10.0.0.300' is not an IPv4 address"),
        ("1 node1 2", "line 1: 'node1' is not an IPv4 address"),
        ("0 10.0.0.1 2", "node numbers must lie in 1..65535"),
        ("1 10.0.0.1 0", "node numbers must lie in 1..65535"),
        ("65535 10.0.0.1 2", "node numbers must lie in 1..65535"),
        ("1 255.255.255.255 2", "the addresses run past 255.255.255.255"),
    ],
)
def test_bad_map_lines_name_the_line(text: str, error: str) -> None:
    with pytest.raises(MapError) as caught:
        parse_map_text(text)
    assert str(caught.value).startswith("line ") and error in str(caught.value), caught.value


def test_numbers_addresses_and_names_given_twice_are_errors() -> None:
    with pytest.raises(MapError, match="node 2 is listed twice"):
        NodeMap.parse("1 10.0.0.1 2", [Node(2, "10.0.0.9")])
    with pytest.raises(MapError, match=r"address 10\.0\.0\.2 is given to nodes 2 and 7"):
        NodeMap.parse("1 10.0.0.1 2", [Node(7, "10.0.0.2")])
    with pytest.raises(MapError, match="name 'a' is given to nodes 3 and 4"):
        NodeMap([Node(3, "10.0.0.3", "a"), Node(4, "10.0.0.4", "a")])


def test_lookups() -> None:
    nodes = NodeMap.parse(
        "1 127.0.0.1 2", [Node(4, "127.0.0.4", "four", 2), Node(5, "192.0.2.5", "five")]
    )
    assert nodes.numbers() == [1, 2, 4, 5]
    assert [n.number for n in nodes] == [1, 2, 4, 5]
    assert len(nodes) == 4 and 4 in nodes and 3 not in nodes
    assert nodes.by_number(4) == Node(4, "127.0.0.4", "four", 2)
    assert nodes.partition_of(4) == 2 and nodes.partition_of(1) == 1
    assert nodes.partition_of(3) is None
    assert nodes.resolve("2") == Node(2, "127.0.0.2")
    assert nodes.resolve("127.0.0.4") == Node(4, "127.0.0.4", "four", 2)
    assert nodes.resolve("five") == Node(5, "192.0.2.5", "five")
    assert nodes.resolve("localhost") == Node(1, "127.0.0.1")  # getaddrinfo, then the map
    assert nodes.resolve("3") is None
    assert nodes.resolve("10.1.1.1") is None
    assert nodes.resolve("no-such-host.invalid") is None
    assert nodes.resolve("") is None


# Runs of nodes that overlap neither in numbers nor in addresses, in any order.
@st.composite
def map_runs(draw: st.DrawFn) -> list[tuple[int, int, int]]:
    count = draw(st.integers(0, 6))
    sizes = draw(st.lists(st.integers(1, 40), min_size=count, max_size=count))
    number_gaps = draw(st.lists(st.integers(0, 500), min_size=count, max_size=count))
    address_gaps = draw(st.lists(st.integers(0, 1 << 20), min_size=count, max_size=count))
    runs, number, address = [], 1, draw(st.integers(1, 1 << 31))
    for size, number_gap, address_gap in zip(sizes, number_gaps, address_gaps, strict=True):
        number += number_gap
        address += address_gap
        runs.append((number, address, size))
        number += size
        address += size
    return draw(st.permutations(runs))


spacing = st.sampled_from([" ", "  ", "\t", " \t "])
comments = st.sampled_from(["", " # a comment", "#", "   # 1 2.3.4.5 6"])


@settings(max_examples=300, deadline=None)
@given(map_runs(), st.data())
def test_map_lines_round_trip(runs: list[tuple[int, int, int]], data: st.DataObject) -> None:
    lines = []
    for first, address, size in runs:
        gap = data.draw(spacing)
        lead = data.draw(st.sampled_from(["", " ", "\t"]))
        words = [str(first), str(ipaddress.IPv4Address(address)), str(size)]
        lines.append(lead + gap.join(words) + data.draw(comments))
        if data.draw(st.booleans()):
            lines.append(data.draw(st.sampled_from(["", "   ", "# only a comment"])))
    nodes = NodeMap.parse("\n".join(lines))
    expected = {
        first + i: str(ipaddress.IPv4Address(address + i))
        for first, address, size in runs
        for i in range(size)
    }
    assert {n.number: n.address for n in nodes} == expected
    assert all(n.name is None and n.partition == 1 for n in nodes)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="0123456789. \tx#-", max_size=30), min_size=1, max_size=5))
def test_map_parser_accepts_or_names_a_line(lines: list[str]) -> None:
    """Any text either parses or fails with one line naming its line number."""
    try:
        nodes = parse_map_text("\n".join(lines))
    except MapError as e:
        assert str(e).startswith("line ") and "\n" not in str(e)
        return
    for node in nodes:
        assert 1 <= node.number <= 65535
        ipaddress.IPv4Address(node.address)


# ---------------------------------------------------------- [cluster]


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.secret"
    path.write_text("correct horse battery staple\n")
    path.chmod(0o600)
    return path


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mosixd.toml"
    path.write_text(text)
    return path


def test_a_full_cluster_section(tmp_path: Path, secret: Path) -> None:
    path = write_config(
        tmp_path,
        f"""
[node]
number = 2
name = "node2"
speed = 1.5
[cluster]
secret_file = "{secret}"
port = 2491
load_interval = 0.5
dead_after = 3
lost_after = 12.5
map = '''
# MOSIX map style
1 10.77.0.1 3
'''
[[cluster.node]]
number = 4
address = "10.77.0.4"
name = "node4"
partition = 2
classes = [5, 7]
[[cluster.node]]
number = 5
address = "10.77.0.5"
""",
    )
    config, _ = read_config(path)
    assert config.node == 2 and config.name == "node2" and config.speed == 1.5
    cluster = config.cluster
    assert cluster is not None
    assert cluster.own == 2 and cluster.me == Node(2, "10.77.0.2")
    assert cluster.secret == b"correct horse battery staple"
    assert (cluster.port, cluster.load_interval, cluster.dead_after) == (2491, 0.5, 3.0)
    assert cluster.lost_after == 12.5
    assert cluster.nodes.numbers() == [1, 2, 3, 4, 5]
    assert cluster.nodes.by_number(4) == Node(4, "10.77.0.4", "node4", 2, frozenset({5, 7}))
    assert cluster.nodes.by_number(5) == Node(5, "10.77.0.5", None, 1)
    assert [n.number for n in cluster.others()] == [1, 3, 4, 5]


def test_defaults_and_no_cluster(tmp_path: Path) -> None:
    config, _ = read_config(write_config(tmp_path, "[queue]\nslots = 2\n"))
    assert config.cluster is None and config.speed == 1.0
    alone, _ = read_config(write_config(tmp_path, "[cluster]\nmap = '1 10.0.0.1 1'\n"))
    assert alone.cluster is not None
    assert alone.cluster.secret is None  # only this node: no secret needed
    assert (alone.cluster.port, alone.cluster.load_interval, alone.cluster.dead_after) == (
        2490,
        1.0,
        6.0,
    )
    assert alone.cluster.lost_after == 30.0
    assert alone.cluster.fast_path is True
    assert alone.cluster.compress == "auto"  # compressed images on slow links only
    off, _ = read_config(
        write_config(tmp_path, "[cluster]\nfast_path = false\nmap = '1 10.0.0.1 1'\n")
    )
    assert off.cluster is not None and off.cluster.fast_path is False
    on, _ = read_config(
        write_config(tmp_path, "[cluster]\ncompress = 'on'\nmap = '1 10.0.0.1 1'\n")
    )
    assert on.cluster is not None and on.cluster.compress == "on"


MAP = "map = '1 10.0.0.1 2'"
BAD_CONFIGS = [
    ("[node]\nspeed = 0\n", "node.speed is out of range"),
    ("[node]\nspeed = 'fast'\n", "node.speed must be a number"),
    ("[node]\nname = ''\n", "node.name must not be empty"),
    ("[cluster]\nport = 0\n" + MAP, "cluster.port 0 is out of range (1-65535)"),
    ("[cluster]\nport = 70000\n" + MAP, "cluster.port 70000 is out of range (1-65535)"),
    ("[cluster]\nport = '2490'\n" + MAP, "cluster.port must be an integer"),
    ("[cluster]\nload_interval = 0\n" + MAP, "cluster.load_interval 0 is out of range"),
    ("[cluster]\nload_interval = true\n" + MAP, "cluster.load_interval must be a number"),
    ("[cluster]\ndead_after = -1\n" + MAP, "cluster.dead_after -1 is out of range"),
    ("[cluster]\ndead_after = 1\nload_interval = 2\n" + MAP, "cluster.dead_after must be longer"),
    ("[cluster]\nlost_after = 0.5\n" + MAP, "cluster.lost_after must be at least 1 s"),
    ("[cluster]\nlost_after = 'long'\n" + MAP, "cluster.lost_after must be a number"),
    ("[cluster]\nfast_path = 1\nmap = '1 10.0.0.1 1'\n", "cluster.fast_path must be true or false"),
    ("[cluster]\nprecopy_rounds = 65\n" + MAP, "cluster.precopy_rounds must be an integer"),
    ("[cluster]\nprecopy_rounds = -1\n" + MAP, "cluster.precopy_rounds must be an integer"),
    ("[cluster]\nprecopy_rounds = true\n" + MAP, "cluster.precopy_rounds must be an integer"),
    ("[cluster]\ncompress = 'fast'\n" + MAP, 'cluster.compress must be "auto", "on" or "off"'),
    ("[cluster]\ncompress = true\n" + MAP, "cluster.compress must be"),
    ("[cluster]\nmap = 5\n", "cluster.map must be a string"),
    ("[cluster]\nmap = '1 10.0.0.1'\n", "cluster.map: line 1: '1 10.0.0.1': expected"),
    ("[cluster]\nmap = '2 10.0.0.2 1'\n", "cluster.map: this node (node.number = 1) is not in"),
    ("[cluster]\nmap = '1 10.0.0.1 2'\n", "cluster.secret_file is required when the map lists"),
    ("[cluster]\nsecret_file = 'relative'\n" + MAP, "cluster.secret_file 'relative' must be an"),
    ("[cluster]\nsecret_file = '/no/such/file'\n" + MAP, "cluster.secret_file /no/such/file: No"),
    ("[cluster]\nsecret_file = '/tmp'\n" + MAP, "cluster.secret_file /tmp: not a regular file"),
    ("[cluster]\nsecrets = 'x'\n" + MAP, "unknown key cluster.secrets"),
    ("[cluster]\n[cluster.node]\nnumber = 1\n", "cluster.node must be an array of tables"),
    ("[[cluster.node]]\naddress = '10.0.0.1'\n", "cluster.node entry 1: number is missing"),
    ("[[cluster.node]]\nnumber = 1\n", "cluster.node entry 1: address is missing"),
    (
        "[[cluster.node]]\nnumber = 0\naddress = '10.0.0.1'\n",
        "cluster.node entry 1: number must be an integer in 1..65535",
    ),
    (
        "[[cluster.node]]\nnumber = 1\naddress = 'node1'\n",
        "cluster.node entry 1: address 'node1' is not an IPv4 address",
    ),
    (
        "[[cluster.node]]\nnumber = 1\naddress = '10.0.0.1'\nname = '7'\n",
        "cluster.node entry 1: name '7' must be a word",
    ),
    (
        "[[cluster.node]]\nnumber = 1\naddress = '10.0.0.1'\npartition = 0\n",
        "cluster.node entry 1: partition must be a positive integer",
    ),
    (
        "[[cluster.node]]\nnumber = 1\naddress = '10.0.0.1'\nclasses = [0]\n",
        "cluster.node entry 1: classes must be a list of positive integers",
    ),
    (
        "[[cluster.node]]\nnumber = 1\naddress = '10.0.0.1'\nport = 1\n",
        "cluster.node entry 1: unknown key port",
    ),
    (
        "[cluster]\nmap = '1 10.0.0.1 2'\n[[cluster.node]]\nnumber = 2\naddress = '10.0.0.9'\n",
        "cluster.map: node 2 is listed twice",
    ),
    (
        "[cluster]\nmap = '1 10.0.0.1 2'\n[[cluster.node]]\nnumber = 3\naddress = '10.0.0.2'\n",
        "cluster.map: address 10.0.0.2 is given to nodes 2 and 3",
    ),
    ("[site]\nmosrun_group = 'mosix-no-such-group'\n", "site.mosrun_group: no group"),
    ("[site]\nmosrun_group = 5\n", "site.mosrun_group must be a string"),
    ("[site]\nmosrun_group = ''\n", "site.mosrun_group must not be empty"),
]


def test_the_sites_mosrun_group_is_found_by_name(tmp_path: Path) -> None:
    config, _ = read_config(write_config(tmp_path, "[site]\nmosrun_group = 'root'\n"))
    assert (config.mosrun_group, config.mosrun_gid) == ("root", 0)
    unset, _ = read_config(write_config(tmp_path, "[queue]\nslots = 2\n"))
    assert unset.mosrun_group == ""


@pytest.mark.parametrize(("text", "error"), BAD_CONFIGS)
def test_bad_configs_are_one_line_naming_the_key(tmp_path: Path, text: str, error: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {error}"), message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("mode", "content", "error"),
    [
        (0o640, "s3cret", "readable or writable by group or others (mode 0640; use chmod 600)"),
        (0o602, "s3cret", "readable or writable by group or others (mode 0602; use chmod 600)"),
        (0o600, " \n", "empty"),
    ],
)
def test_unsafe_or_empty_secret_files_are_refused(
    tmp_path: Path, mode: int, content: str, error: str
) -> None:
    secret = tmp_path / "cluster.secret"
    secret.write_text(content)
    secret.chmod(mode)
    path = write_config(tmp_path, f"[cluster]\nsecret_file = '{secret}'\n{MAP}\n")
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    assert str(caught.value) == f"{path}: cluster.secret_file {secret}: {error}"


def run_mosixd(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mosixd", "--config", str(config), "--run-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, MOSIX_RUN_DIR=str(tmp_path / "run")),
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[cluster]\nport = 70000\n" + MAP, "cluster.port 70000 is out of range (1-65535)"),
        ("[cluster]\nmap = '1 10.0.0.1 x'\n", "cluster.map: line 1: '1 10.0.0.1 x': node"),
        ("[cluster]\nmap = '1 10.0.0.1 2'\n", "cluster.secret_file is required"),
    ],
)
def test_mosixd_refuses_bad_cluster_configs_in_one_line(
    tmp_path: Path, text: str, error: str
) -> None:
    config = write_config(tmp_path, text)
    result = run_mosixd(tmp_path, config)
    assert result.returncode != 0
    assert result.stderr.startswith(f"mosixd: {config}: {error}"), result.stderr
    assert result.stderr.count("\n") == 1


def test_mosixd_that_cannot_listen_says_so_in_one_line(tmp_path: Path, secret: Path) -> None:
    """192.0.2.1 (TEST-NET-1) is on no interface here: the agent cannot bind its port."""
    config = write_config(
        tmp_path,
        f"[cluster]\nsecret_file = '{secret}'\nport = 2490\nmap = '1 192.0.2.1 2'\n",
    )
    result = run_mosixd(tmp_path, config)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "mosixd: cluster: cannot listen on 192.0.2.1:2490: Cannot assign requested address"
    )
    assert "Traceback" not in result.stderr
