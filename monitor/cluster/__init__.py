"""Several `crypitor run` instances on one Redis (`[cluster]`): membership, probing shared by
ownership per slot, the results feed, the cluster-wide view and uptime history, and
alerting led by one instance (its store in Redis, the lease, the results-stream consumer)."""

from monitor.cluster.alert_store import RedisAlertStore
from monitor.cluster.connection import connect
from monitor.cluster.history import ClusterHistory
from monitor.cluster.leader import AlertingLeader, RedisLeases
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
from monitor.cluster.slo import RedisSloHistory
from monitor.cluster.view import ClusterView, LocationResult, TargetView

__all__ = [
    "PREFIX",
    "AlertingLeader",
    "ClusterHistory",
    "ClusterUnavailable",
    "ClusterView",
    "LocationResult",
    "Member",
    "Membership",
    "Ownership",
    "ProbeGate",
    "RedisAlertStore",
    "RedisLeases",
    "RedisSloHistory",
    "ResultFeed",
    "TargetView",
    "connect",
    "default_instance",
    "latest_field",
    "owner",
    "probed_from",
    "recently_probed",
]
