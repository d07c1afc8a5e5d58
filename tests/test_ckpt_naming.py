"""Checkpoint file names: the manual's examples and the rules behind them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mosix.ckpt.naming import series


def names(file: str, pid: int, limit: int, count: int) -> list[str]:
    s = series(file, pid, limit)
    return [s.name(i) for i in range(count)]


def test_a_name_without_extension_gets_one_from_1() -> None:
    assert names("mysave", 1, 0, 3) == ["mysave.1", "mysave.2", "mysave.3"]


def test_a_numbered_name_starts_at_its_number() -> None:
    assert names("save.4", 1, 0, 3) == ["save.4", "save.5", "save.6"]


def test_default_is_ckpt_pid() -> None:
    assert names("", 4321, 0, 2) == ["ckpt.4321.1", "ckpt.4321.2"]


def test_limit_recycles_as_in_the_manual() -> None:
    assert names("save.4", 1, 3, 7) == [
        "save.4",
        "save.5",
        "save.6",
        "save.4",
        "save.5",
        "save.6",
        "save.4",
    ]


def test_a_dot_number_in_a_directory_is_not_an_extension() -> None:
    assert names("run.5/save", 1, 0, 1) == ["run.5/save.1"]


@given(
    base=st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
    first=st.integers(0, 10**6),
    limit=st.integers(0, 20),
    taken=st.integers(0, 500),
)
def test_series_rules(base: str, first: int, limit: int, taken: int) -> None:
    s = series(f"{base}.{first}", 99, limit)
    assert (s.base, s.first) == (base, first)
    n = s.number(taken)
    if limit:
        assert first <= n < first + limit
        assert s.number(taken + limit) == n  # recycled every -N checkpoints
    else:
        assert n == first + taken
    # the canonical form the agent stores in an image continues the same series
    again = series(f"{s.base}.{s.first}", 12345, limit)
    assert again.name(taken) == s.name(taken)
