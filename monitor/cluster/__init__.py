"""Several `crypitor run` instances on one Redis (`[cluster]`): membership so far."""

from monitor.cluster.membership import ClusterUnavailable, Member, Membership, default_instance

__all__ = ["ClusterUnavailable", "Member", "Membership", "default_instance"]
