"""The administrator's wrapper in a real test cluster whose every node has
``[site] mosrun_group``: a -M batch job the wrapper submitted at node 1 runs
under the discipline on node 2, whose gate lets its mosrun in (node 1's agent
admitted it), while a plain mosrun -M is refused at node 1.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.agents import as_user
from support.cbuild import build_c
from support.clusters import node_programs
from support.users import users_fixture

from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parent.parent
SITE_GROUP = "mosixsitec"
REFUSAL = (
    "mosrun: MOSIX work starts here only through the site's mosrun wrapper "
    f"(group '{SITE_GROUP}')\n"
)

users = users_fixture(("mosixsitec1",))


@pytest.fixture(scope="module")
def wrapper() -> Iterator[Path]:
    """The site's wrapper, set-group-ID to the site's group, where every node sees it."""
    subprocess.run(["groupadd", "-f", SITE_GROUP], check=True)
    mosrun = shutil.which("mosrun")
    assert mosrun is not None
    python = Path(mosrun).parent / "python"
    try:
        with node_programs("site", {}) as directory:
            directory.chmod(0o755)
            path = build_c(
                REPO / "packaging" / "mosrun-wrapper.c",
                directory / "mosrun-site",
                f'-DMOSRUN="{mosrun}"',
                f'-DPYTHON="{python}"',
            )
            os.chown(path, 0, grp.getgrnam(SITE_GROUP).gr_gid)
            path.chmod(0o2755)  # after chown, which clears it
            yield path
    finally:
        subprocess.run(["groupdel", SITE_GROUP], check=False)


def test_a_wrappers_M_job_runs_on_another_gated_node(
    make_cluster: Callable[..., LocalCluster], wrapper: Path, users: tuple[str]
) -> None:
    user = users[0]
    cluster = make_cluster(2, cluster=ClusterSettings(site_group=SITE_GROUP, balance_interval=0))
    job = ("-M", "-2", "sh", "-c", "echo ran; id -g")
    done = cluster.run(
        1, as_user(user, (str(wrapper), *job)), capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"ran\n{pwd.getpwnam(user).pw_gid}\n"
    plain = cluster.run(
        1, as_user(user, ("mosrun", *job)), capture_output=True, text=True, timeout=120
    )
    assert (plain.returncode, plain.stdout, plain.stderr) == (125, "", REFUSAL)
