"""Prometheus export of the probe results: a collector that renders `TargetState`s at scrape.

Probes only store their result; the series are built when Prometheus asks. That keeps a
probe's cost independent of how many series it feeds and keeps memory at one result per
target instead of a dozen labelled children. Names, help and types come from `catalog`.

With `[cluster]` every per-target series carries `location`, and an instance shows only what
it probed: the gauges of the targets `shown` says it probed recently, the counters of every
target it ever probed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import catalog.metrics as m
from catalog import XRPL_SERVER_STATES, MetricDef
from monitor.runtime import SchedulerMetrics, TargetState

PHASES = ("resolve", "connect", "tls", "processing", "transfer")
_CHAIN_VALUES: tuple[tuple[str, MetricDef], ...] = (
    ("head_block", m.CHAIN_HEAD),
    ("block_lag", m.CHAIN_LAG),
    ("head_age_seconds", m.CHAIN_HEAD_AGE),
    ("peers", m.CHAIN_PEERS),
    ("syncing", m.CHAIN_SYNCING),
    ("lib_lag", m.CHAIN_LIB_LAG),
    ("load_factor", m.CHAIN_LOAD_FACTOR),
    ("chain_id", m.CHAIN_ID),
)
CHAIN_TYPES = frozenset({"ethereum", "eos", "xrpl", "bitcoin"})


def extra_label_names(states: Sequence[TargetState]) -> tuple[str, ...]:
    """The union of the targets' own label names: every per-target series carries all of
    them (empty where a target does not set one), as Prometheus wants fixed label sets."""
    return tuple(sorted({k for s in states for k in s.config.labels}))


class ProbeCollector(Collector):
    def __init__(self, states: Sequence[TargetState], location: str | None = None,
                 shown: Callable[[TargetState], bool] | None = None) -> None:
        """`states` may change in place (a config reload): the label sets follow it.
        `location` ([cluster]): the value of the `location` label every per-target series
        gets (a target's own `location` label gives way); `shown`: whether a target's gauges
        are exported (None: always)."""
        self._states = states
        self._location = location
        self._shown = shown
        self._configs: tuple[int, ...] | None = None  # None: never worked out (no targets is ())
        self._label_values()

    def _label_values(self) -> None:
        """Work out the label values once per set of target configs, not per scrape."""
        configs = tuple(id(s.config) for s in self._states)  # live objects: ids are unique
        if configs == self._configs:
            return
        states = self._states
        extra = extra_label_names(states)
        here: tuple[str, ...] = ()
        if self._location is not None:
            extra = tuple(k for k in extra if k != "location")
            here = (self._location,)
        self._extra = ("location", *(k for k in extra if k != "chain")) if here else \
            tuple(k for k in extra if k != "chain")
        # non-chain metrics carry `chain` like any other label
        self._base_extra = ("location", *extra) if here else extra
        self._values = {
            s.name: (*here, *(s.config.labels.get(k, "") for k in extra)) for s in states
        }
        self._chain_values = {
            s.name: (*here, *(s.config.labels.get(k, "") for k in extra if k != "chain"))
            for s in states
        }
        self._configs = configs

    def _family(self, d: MetricDef, *labels: str,
                extra: tuple[str, ...] = ()) -> GaugeMetricFamily | CounterMetricFamily:
        names = ["target", *labels, *extra]
        if d.kind is m.MetricKind.COUNTER:
            return CounterMetricFamily(d.name, d.help, labels=names)
        return GaugeMetricFamily(d.name, d.help, labels=names)

    def collect(self) -> Iterator[Metric]:
        self._label_values()
        ex = self._base_extra
        success = self._family(m.PROBE_SUCCESS, "type", extra=ex)
        duration = self._family(m.PROBE_DURATION, "type", extra=ex)
        last_run = self._family(m.PROBE_LAST_RUN, "type", extra=ex)
        status = self._family(m.PROBE_HTTP_STATUS, extra=ex)
        phases = self._family(m.PROBE_HTTP_PHASE, "phase", extra=ex)
        expiry = self._family(m.PROBE_SSL_EXPIRY, extra=ex)
        body = self._family(m.PROBE_HTTP_BODY_BYTES, extra=ex)
        connect = self._family(m.PROBE_TCP_CONNECT, extra=ex)
        canary = self._family(m.PROBE_CANARY_DELIVERY, extra=ex)
        totals = self._family(m.PROBES_TOTAL, "type", "result", extra=ex)
        failures = self._family(m.PROBE_FAILURES, "type", "reason", extra=ex)
        skipped = self._family(m.PROBE_SKIPPED, extra=ex)
        in_a_row = self._family(m.PROBE_CONSECUTIVE_FAILURES, "type", extra=ex)
        chain = {d.name: self._family(d, "chain", extra=self._extra)
                 for _, d in _CHAIN_VALUES}
        state_rank = self._family(m.CHAIN_SERVER_STATE, "chain", extra=self._extra)
        cluster = self._location is not None
        for s in self._states:
            name, kind, lv = s.name, s.config.type, self._values[s.name]
            if cluster and not (s.successes or s.failures or s.skipped):
                continue  # never probed here: another instance's
            totals.add_metric([name, kind, "success", *lv], s.successes)
            totals.add_metric([name, kind, "failure", *lv], s.failures)
            for reason, count in (s.failures_by_reason or {}).items():
                failures.add_metric([name, kind, reason, *lv], count)
            if s.skipped:
                skipped.add_metric([name, *lv], s.skipped)
            r = s.last
            if r is None or (self._shown is not None and not self._shown(s)):
                continue
            success.add_metric([name, kind, *lv], 1.0 if r.success else 0.0)
            duration.add_metric([name, kind, *lv], r.duration)
            in_a_row.add_metric([name, kind, *lv], s.consecutive_failures)
            last_run.add_metric([name, kind, *lv], r.started_at.timestamp())
            values = r.values
            if kind == "http":
                status.add_metric([name, *lv], float(values.get("status_code", 0)))
                for phase in PHASES:
                    phases.add_metric([name, phase, *lv], r.phases.get(phase, 0.0))
                if "body_bytes" in values:
                    body.add_metric([name, *lv], float(values["body_bytes"]))
                days = values.get("cert_expiry_days")
                if isinstance(days, int | float):
                    expiry.add_metric([name, *lv], r.started_at.timestamp() + days * 86400)
            elif kind == "tcp" and "connect_seconds" in values:
                connect.add_metric([name, *lv], float(values["connect_seconds"]))
            elif kind == "webhook_canary" and "delivery_seconds" in values:
                canary.add_metric([name, *lv], float(values["delivery_seconds"]))
            elif kind in CHAIN_TYPES:
                clv = [name, s.config.chain, *self._chain_values[name]]
                for key, d in _CHAIN_VALUES:
                    v = values.get(key)
                    if isinstance(v, int | float):  # bool is an int: syncing → 0/1
                        chain[d.name].add_metric(clv, float(v))
                st = values.get("server_state")
                if isinstance(st, str) and st in XRPL_SERVER_STATES:
                    state_rank.add_metric(clv, float(XRPL_SERVER_STATES.index(st)))
        yield from (success, duration, last_run, status, phases, expiry, body, connect, canary,
                    totals, failures, skipped, in_a_row, *chain.values(), state_rank)


def new_registry(states: Sequence[TargetState], location: str | None = None,
                 shown: Callable[[TargetState], bool] | None = None,
                 ) -> tuple[CollectorRegistry, SchedulerMetrics]:
    """A registry of our own (never the global one) with process metrics, the probe
    collector (`location`, `shown`: see `ProbeCollector`) and the scheduler's own metrics,
    which it returns for the scheduler."""
    from prometheus_client import PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(ProbeCollector(states, location, shown))
    registry.register(_TargetsCollector(states))
    lag = Histogram(m.SCHEDULER_LAG.name, m.SCHEDULER_LAG.help,
                    buckets=m.SCHEDULER_LAG.buckets, registry=registry)
    missed = Counter(m.SCHEDULER_MISSED.name, m.SCHEDULER_MISSED.help, registry=registry)
    return registry, SchedulerMetrics(lag, missed)


class _TargetsCollector(Collector):
    def __init__(self, states: Sequence[TargetState]) -> None:
        self._states = states

    def collect(self) -> Iterator[Metric]:
        from monitor import __version__

        counts: dict[str, int] = {}
        for s in self._states:
            counts[s.config.type] = counts.get(s.config.type, 0) + 1
        fam = GaugeMetricFamily(m.TARGETS.name, m.TARGETS.help, labels=["type"])
        for kind, n in sorted(counts.items()):
            fam.add_metric([kind], n)
        info = GaugeMetricFamily(m.BUILD_INFO.name, m.BUILD_INFO.help, labels=["version"])
        info.add_metric([__version__], 1)
        yield fam
        yield info
