"""A local test cluster: N MOSIX nodes on one machine.

Each node is a network namespace joined to the others through a bridge, plus a
mount namespace in which /tmp, /run/mosix and /etc/mosix are its own; each runs
its own ``mosixd``.  Needs root.  See ``LocalCluster`` and the
``mosix-testcluster`` command.
"""

from mosix.testcluster.cluster import LocalCluster, existing_clusters
from mosix.testcluster.errors import ClusterError
from mosix.testcluster.layout import DEFAULT_NAME, Layout

__all__ = ["DEFAULT_NAME", "ClusterError", "Layout", "LocalCluster", "existing_clusters"]
