"""The cluster's node map: node numbers, IPv4 addresses, names, partitions.

Two ways to list nodes, which may be combined:
- MOSIX map lines, ``first-node-number first-address count``: ``count``
  nodes numbered from ``first-node-number`` at consecutive IPv4 addresses
  (``#`` starts a comment); these nodes have no name;
- explicit entries (``Node`` values, from ``[[cluster.node]]``), which may
  carry a name, a partition and the -G classes the node takes from other
  partitions.
A node number, an address or a name given twice is an error.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_NODE = 65535  # node numbers are 1..MAX_NODE


class MapError(ValueError):
    """A node map that cannot be used; the text is one line."""


@dataclass(frozen=True)
class Node:
    number: int
    address: str  # dotted IPv4
    name: str | None = None
    partition: int = 1
    # the -G classes it takes from other partitions (None: every class from 1 up)
    classes: frozenset[int] | None = None

    def admits(self, grid_class: int) -> bool:
        """Whether a process of another partition with ``-G{grid_class}`` may run here."""
        return grid_class > 0 and (self.classes is None or grid_class in self.classes)

    def label(self) -> str:
        """How logs name the node: 'node 3 (10.77.0.3)' or 'node 3 (node3, 10.77.0.3)'."""
        where = f"{self.name}, {self.address}" if self.name else self.address
        return f"node {self.number} ({where})"


def ipv4(text: str) -> str | None:
    """``text`` as a canonical dotted IPv4 address, or None if it is not one."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def parse_map_text(text: str) -> list[Node]:
    """The nodes of MOSIX map lines; :class:`MapError` names the first bad line."""
    nodes: list[Node] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) != 3:
            raise MapError(f"line {lineno}: {line!r}: expected 'first-node-number address count'")
        first_text, address_text, count_text = words
        if not (first_text.isdigit() and count_text.isdigit()):
            raise MapError(f"line {lineno}: {line!r}: node number and count must be numbers")
        first, count = int(first_text), int(count_text)
        address = ipv4(address_text)
        if address is None:
            raise MapError(f"line {lineno}: {address_text!r} is not an IPv4 address")
        if first < 1 or count < 1 or first + count - 1 > MAX_NODE:
            raise MapError(f"line {lineno}: {line!r}: node numbers must lie in 1..{MAX_NODE}")
        start = int(ipaddress.IPv4Address(address))
        if start + count - 1 > 0xFFFFFFFF:
            raise MapError(f"line {lineno}: {line!r}: the addresses run past 255.255.255.255")
        nodes.extend(Node(first + i, str(ipaddress.IPv4Address(start + i))) for i in range(count))
    return nodes


class NodeMap:
    """The nodes of the cluster, looked up by number, address or name."""

    def __init__(self, nodes: Iterable[Node] = ()) -> None:
        self._by_number: dict[int, Node] = {}
        self._by_address: dict[str, Node] = {}
        self._by_name: dict[str, Node] = {}
        for node in nodes:
            self._add(node)

    def _add(self, node: Node) -> None:
        if not 1 <= node.number <= MAX_NODE:
            raise MapError(f"node number {node.number} is not in 1..{MAX_NODE}")
        if ipv4(node.address) != node.address:
            raise MapError(f"node {node.number}: {node.address!r} is not an IPv4 address")
        if node.number in self._by_number:
            raise MapError(f"node {node.number} is listed twice")
        if node.address in self._by_address:
            other = self._by_address[node.address].number
            raise MapError(f"address {node.address} is given to nodes {other} and {node.number}")
        if node.name is not None:
            if node.name in self._by_name:
                other = self._by_name[node.name].number
                raise MapError(f"name {node.name!r} is given to nodes {other} and {node.number}")
            self._by_name[node.name] = node
        self._by_number[node.number] = node
        self._by_address[node.address] = node

    @classmethod
    def parse(cls, text: str = "", explicit: Iterable[Node] = ()) -> NodeMap:
        """Map lines and explicit entries together (a duplicate is a :class:`MapError`)."""
        return cls([*parse_map_text(text), *explicit])

    def by_number(self, number: int) -> Node | None:
        return self._by_number.get(number)

    def by_address(self, address: str) -> Node | None:
        canonical = ipv4(address)
        return self._by_address.get(canonical) if canonical else None

    def by_name(self, name: str) -> Node | None:
        return self._by_name.get(name)

    def resolve(self, spec: str) -> Node | None:
        """A node given as its number ("3"), an IPv4 address or a host name.

        Names in the map come first; other names are looked up with
        getaddrinfo (which may block: call from a thread inside trio) and
        match a node by address.
        """
        spec = spec.strip()
        if not spec:
            return None
        if spec.isdigit():
            return self.by_number(int(spec))
        if ipv4(spec) is not None:
            return self.by_address(spec)
        named = self.by_name(spec)
        if named is not None:
            return named
        try:
            infos = socket.getaddrinfo(spec, None, socket.AF_INET, socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return None
        for *_, sockaddr in infos:
            node = self.by_address(str(sockaddr[0]))
            if node is not None:
                return node
        return None

    def numbers(self) -> list[int]:
        return sorted(self._by_number)

    def partition_of(self, number: int) -> int | None:
        node = self._by_number.get(number)
        return node.partition if node is not None else None

    def __iter__(self) -> Iterator[Node]:
        return iter(sorted(self._by_number.values(), key=lambda n: n.number))

    def __len__(self) -> int:
        return len(self._by_number)

    def __contains__(self, number: object) -> bool:
        return number in self._by_number
