"""Chain followers: `follower` drives one chain (head, blocks, transfers, the store's
`advance`), `block_reader` reads spans of blocks from the node, `cursor` decides what each
block means (detected → confirmed / reverted), `matching` finds watched addresses, and
`leases` decides which process follows a chain when several share a store.
"""

from service.follow.follower import ChainFollower, ChainSettings, FollowerMetrics, cursor_name
from service.follow.leases import CursorLeases

__all__ = ["ChainFollower", "ChainSettings", "CursorLeases", "FollowerMetrics", "cursor_name"]
