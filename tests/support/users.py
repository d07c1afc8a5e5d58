"""Unprivileged users made by the tests (fixtures ``two_users``, ``hostile_users``; a module
makes its own pair with ``users_fixture``)."""

from __future__ import annotations

import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

USERS = ("mosixtest1", "mosixtest2")


def private_dirs_on_the_way(path: Path) -> list[Path]:
    """Directories above ``path`` that other users cannot traverse (e.g. /root with pyenv)."""
    return [d for d in Path(path).resolve().parents if not d.stat().st_mode & 0o001]


def users_fixture(names: tuple[str, str]) -> Callable[[], Iterator[tuple[str, str]]]:
    """A module-scoped fixture: two unprivileged users, made for the tests of one
    module and removed after them."""

    @pytest.fixture(scope="module")
    def users() -> Iterator[tuple[str, str]]:
        # The test users run the same Python; where it lives under a private home
        # directory, allow traversal (not listing) for the duration of the tests.
        opened = []
        for tool in (sys.executable, shutil.which("mosrun") or sys.executable):
            for d in private_dirs_on_the_way(Path(tool)):
                opened.append((d, d.stat().st_mode))
                d.chmod(d.stat().st_mode | 0o001)
        for name in names:
            try:
                pwd.getpwnam(name)
            except KeyError:
                subprocess.run(
                    ["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True
                )
        try:
            yield names
        finally:
            for name in names:
                subprocess.run(["userdel", name], check=False)
            for d, mode in reversed(opened):
                d.chmod(mode & 0o7777)

    return users


two_users = users_fixture(USERS)
hostile_users = users_fixture(("mosixhostile1", "mosixhostile2"))
