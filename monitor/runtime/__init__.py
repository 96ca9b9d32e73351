"""The running monitor's parts: the probe scheduler, what is known of each target
(`TargetState`, updated after every probe) and the uptime history kept in SQLite.
"""

from monitor.runtime.history import (
    DAYS_SHOWN,
    HOURS_SHOWN,
    WINDOWS,
    Bucket,
    Buckets,
    Counts,
    History,
    UptimeHistory,
    add_counts,
    assemble,
    shown,
)
from monitor.runtime.scheduler import (
    Gate,
    Job,
    ProbeScheduler,
    SchedulerMetrics,
    grid_offset,
    grid_slot,
    grid_start,
    run_bounded,
)
from monitor.runtime.state import TargetState, last_good

__all__ = [
    "DAYS_SHOWN",
    "HOURS_SHOWN",
    "WINDOWS",
    "Bucket",
    "Buckets",
    "Counts",
    "Gate",
    "History",
    "Job",
    "ProbeScheduler",
    "SchedulerMetrics",
    "TargetState",
    "UptimeHistory",
    "add_counts",
    "assemble",
    "grid_offset",
    "grid_slot",
    "grid_start",
    "last_good",
    "run_bounded",
    "shown",
]
