"""The running monitor's parts: the probe scheduler, what is known of each target
(`TargetState`, updated after every probe) and the uptime history kept in SQLite.
"""

from monitor.runtime.history import UptimeHistory
from monitor.runtime.scheduler import Job, ProbeScheduler, SchedulerMetrics, run_bounded
from monitor.runtime.state import TargetState, last_good

__all__ = [
    "Job",
    "ProbeScheduler",
    "SchedulerMetrics",
    "TargetState",
    "UptimeHistory",
    "last_good",
    "run_bounded",
]
