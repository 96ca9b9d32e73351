"""The running monitor's parts: the probe scheduler, what is known of each target
(`TargetState`, updated after every probe), the uptime history kept in SQLite, and the
SLOs (`slo`).
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
    record_probe,
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
from monitor.runtime.slo import EVERY as SLO_EVERY
from monitor.runtime.slo import FINE_KEEP as SLO_FINE_KEEP
from monitor.runtime.slo import FINE_LIMIT as SLO_FINE_LIMIT
from monitor.runtime.slo import RETENTION as SLO_RETENTION
from monitor.runtime.slo import (
    SloBook,
    SloCounts,
    SloHistory,
    SloStatus,
    SqliteSloHistory,
    slo_collector,
)
from monitor.runtime.state import TargetState, last_good

__all__ = [
    "DAYS_SHOWN",
    "HOURS_SHOWN",
    "SLO_EVERY",
    "SLO_FINE_KEEP",
    "SLO_FINE_LIMIT",
    "SLO_RETENTION",
    "WINDOWS",
    "Bucket",
    "Buckets",
    "Counts",
    "Gate",
    "History",
    "Job",
    "ProbeScheduler",
    "SchedulerMetrics",
    "SloBook",
    "SloCounts",
    "SloHistory",
    "SloStatus",
    "SqliteSloHistory",
    "TargetState",
    "UptimeHistory",
    "add_counts",
    "assemble",
    "grid_offset",
    "grid_slot",
    "grid_start",
    "last_good",
    "record_probe",
    "run_bounded",
    "shown",
    "slo_collector",
]
