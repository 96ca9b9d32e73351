"""Several `crypitor run` instances on one Redis (`[cluster]`): membership, probing shared by
ownership and per-slot claims, the results feed, the cluster-wide view and uptime history."""

from monitor.cluster.connection import connect
from monitor.cluster.history import ClusterHistory
from monitor.cluster.membership import (
    PREFIX,
    ClusterUnavailable,
    Member,
    Membership,
    default_instance,
)
from monitor.cluster.probing import (
    Ownership,
    ProbeGate,
    ResultFeed,
    latest_field,
    owner,
    probed_from,
    recently_probed,
)
from monitor.cluster.view import ClusterView, LocationResult, TargetView

__all__ = [
    "PREFIX",
    "ClusterHistory",
    "ClusterUnavailable",
    "ClusterView",
    "LocationResult",
    "Member",
    "Membership",
    "Ownership",
    "ProbeGate",
    "ResultFeed",
    "TargetView",
    "connect",
    "default_instance",
    "latest_field",
    "owner",
    "probed_from",
    "recently_probed",
]
