"""Several `crypitor run` instances on one Redis (`[cluster]`): membership, and alerting led by
one instance (its store in Redis, the lease, the results-stream consumer)."""

from monitor.cluster.alert_store import PREFIX, RedisAlertStore
from monitor.cluster.leader import AlertingLeader, RedisLeases
from monitor.cluster.membership import ClusterUnavailable, Member, Membership, default_instance

__all__ = ["PREFIX", "AlertingLeader", "ClusterUnavailable", "Member", "Membership",
           "RedisAlertStore", "RedisLeases", "default_instance"]
