"""Metric definitions: name, kind, help text and the labels each metric always carries.

Per-target metrics also carry the union of the targets' configured `labels`; those are
added by the exporter, not listed here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MetricKind(enum.Enum):
    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()
    per_target: bool = False  # carries `target` plus the targets' extra labels
    buckets: tuple[float, ...] = ()
    unit: str = ""  # Grafana / GCP unit hint: "s", "unix", "bytes", "" for plain numbers


G, C, H = MetricKind.GAUGE, MetricKind.COUNTER, MetricKind.HISTOGRAM

# --- probes (blackbox_exporter-compatible names first) ----------------------------------
PROBE_SUCCESS = MetricDef(
    "probe_success", G, "Whether the last probe of the target succeeded (1) or not (0).",
    ("type",), per_target=True)
PROBE_DURATION = MetricDef(
    "probe_duration_seconds", G, "How long the last probe took, in seconds.",
    ("type",), per_target=True, unit="s")
PROBE_HTTP_STATUS = MetricDef(
    "probe_http_status_code", G, "HTTP status code of the last probe (0 when none arrived).",
    per_target=True)
PROBE_HTTP_PHASE = MetricDef(
    "probe_http_duration_seconds", G, "Duration of each phase of the last HTTP probe.",
    ("phase",), per_target=True, unit="s")
PROBE_SSL_EXPIRY = MetricDef(
    "probe_ssl_earliest_cert_expiry", G,
    "Expiry of the certificate the target presented, as a unix timestamp.",
    per_target=True, unit="unix")
PROBE_HTTP_BODY_BYTES = MetricDef(
    "probe_http_content_length", G, "Bytes of response body received by the last HTTP probe.",
    per_target=True, unit="bytes")
PROBE_TCP_CONNECT = MetricDef(
    "crypitor_probe_connect_seconds", G, "TCP connect time of the last tcp probe.",
    per_target=True, unit="s")
PROBE_CANARY_DELIVERY = MetricDef(
    "crypitor_webhook_canary_delivery_seconds", G,
    "End-to-end time of the last canary event: POST to the service until the signed "
    "delivery reached the monitor's sink.", per_target=True, unit="s")
PROBES_TOTAL = MetricDef(
    "crypitor_probes_total", C, "Probes run, by result.", ("type", "result"), per_target=True)
PROBE_FAILURES = MetricDef(
    "crypitor_probe_failures_total", C, "Failed probes, by reason.",
    ("type", "reason"), per_target=True)
PROBE_LAST_RUN = MetricDef(
    "crypitor_probe_last_run_timestamp_seconds", G, "When the target was last probed.",
    ("type",), per_target=True, unit="unix")
PROBE_CONSECUTIVE_FAILURES = MetricDef(
    "crypitor_probe_consecutive_failures", G,
    "Failed probes of the target in a row since its last success (built-in alert TargetDown "
    "fires at 3).", ("type",), per_target=True)
PROBE_SKIPPED = MetricDef(
    "crypitor_probe_skipped_total", C,
    "Runs skipped because the previous probe of the target was still running.",
    per_target=True)

# --- chains ------------------------------------------------------------------------------
CHAIN_HEAD = MetricDef(
    "crypitor_chain_head_block", G, "Head block (ledger) number the node reported.",
    ("chain",), per_target=True)
CHAIN_LAG = MetricDef(
    "crypitor_chain_block_lag", G, "Blocks the node is behind its reference.",
    ("chain",), per_target=True)
CHAIN_HEAD_AGE = MetricDef(
    "crypitor_chain_head_age_seconds", G, "Age of the node's head block, in seconds.",
    ("chain",), per_target=True, unit="s")
CHAIN_PEERS = MetricDef(
    "crypitor_chain_peers", G, "Peers the node is connected to.", ("chain",), per_target=True)
CHAIN_SYNCING = MetricDef(
    "crypitor_chain_syncing", G, "Whether the node reports it is syncing (1) or not (0).",
    ("chain",), per_target=True)
CHAIN_LIB_LAG = MetricDef(
    "crypitor_chain_lib_lag", G, "EOS: blocks between head and last irreversible block.",
    ("chain",), per_target=True)
CHAIN_LOAD_FACTOR = MetricDef(
    "crypitor_chain_load_factor", G, "XRPL: the server's load factor.",
    ("chain",), per_target=True)
# rippled's server states in its own order, worst first: the value of crypitor_chain_server_state
# is a state's index here, and the xrpl probe counts the last three as healthy.
XRPL_SERVER_STATES = ("disconnected", "connected", "syncing", "tracking", "full", "validating",
                      "proposing")
XRPL_HEALTHY_STATES = frozenset(XRPL_SERVER_STATES[4:])
CHAIN_SERVER_STATE = MetricDef(
    "crypitor_chain_server_state", G,
    "XRPL server_state as a rank: "
    + ", ".join(f"{rank} {state}" for rank, state in enumerate(XRPL_SERVER_STATES)) + ".",
    ("chain",), per_target=True)
CHAIN_ID = MetricDef(
    "crypitor_chain_id", G, "EVM chain id the node reported.", ("chain",), per_target=True)

# --- scheduler and process ---------------------------------------------------------------
SCHEDULER_LAG = MetricDef(
    "crypitor_scheduler_lag_seconds", H,
    "Delay between a probe's scheduled time and its start.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), unit="s")
SCHEDULER_MISSED = MetricDef(
    "crypitor_scheduler_missed_total", C,
    "Probe runs dropped because they could not start within their interval (a stalled "
    "event loop or a suspended machine).")
TARGETS = MetricDef(
    "crypitor_targets", G, "Configured targets, by type.", ("type",))
TASK_CRASHES = MetricDef(
    "crypitor_task_crashes_total", C,
    "Crashes of a supervised background task (each is logged and the task restarted); "
    "every process counts its own tasks.", ("task",))
CONFIG_RELOAD_OK = MetricDef(
    "crypitor_config_last_reload_successful", G,
    "1 when the last config (re)load was applied; 0 when the last reload failed validation "
    "and the previous config still runs.")
CONFIG_RELOAD_TIME = MetricDef(
    "crypitor_config_last_reload_success_timestamp_seconds", G,
    "When the config was last loaded or reloaded successfully.", unit="unix")
CLUSTER_MEMBERS = MetricDef(
    "crypitor_cluster_members", G,
    "[cluster] only: live instances (heard from within the lease) per location, as this "
    "instance last read them from Redis; a location whose instances all died shows 0.",
    ("location",))
CLUSTER_ALERTING_LEADER = MetricDef(
    "crypitor_cluster_alerting_leader", G,
    "[cluster] only: 1 while this instance holds the alerting lease (it evaluates, routes, "
    "sends and polls the bots for the whole cluster), else 0; exactly one instance shows 1.")
CLUSTER_OWNED = MetricDef(
    "crypitor_cluster_owned_targets", G,
    "[cluster] only: targets this instance probes now (rendezvous hashing over the live "
    "instances of its location; a target's `locations` honoured).")
CLUSTER_RESULTS_DROPPED = MetricDef(
    "crypitor_cluster_results_dropped_total", C,
    "[cluster] only: probe results this instance could not publish to Redis (unreachable, "
    "or its buffer full); its own /metrics still shows them.")
BUILD_INFO = MetricDef(
    "crypitor_build_info", G, "Always 1; the version label says which build runs.",
    ("version",))

# --- webhook service (exported by service/, named here so dashboards can use them) --------
WEBHOOK_EVENTS = MetricDef(
    "crypitor_webhook_events_received_total", C, "Events accepted by the webhook service.")
WEBHOOK_DELIVERIES = MetricDef(
    "crypitor_webhook_deliveries_total", C, "Delivery attempts, by outcome.", ("outcome",))
WEBHOOK_LATENCY = MetricDef(
    "crypitor_webhook_delivery_latency_seconds", H,
    "Time from an event's acceptance to a 2xx answer from the endpoint.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
             30.0, 60.0, 300.0),
    unit="s")
WEBHOOK_QUEUE_DEPTH = MetricDef(
    "crypitor_webhook_queue_depth", G, "Deliveries waiting to be attempted.")
WEBHOOK_OLDEST_PENDING = MetricDef(
    "crypitor_webhook_oldest_pending_age_seconds", G,
    "Age of the oldest event that still has a delivery waiting.", unit="s")
WEBHOOK_DISABLED_ENDPOINTS = MetricDef(
    "crypitor_webhook_disabled_endpoints", G, "Endpoints disabled (410 or failing too long).")
WEBHOOK_SATURATION = MetricDef(
    "crypitor_webhook_saturation", G,
    "Share of this process's delivery capacity in use over the last 15 s (0..1): the larger of "
    "its delivery slots held (max_in_flight) and one CPU core used (the process runs Python on "
    "one core). What an autoscaler targets in the steady state.")
WEBHOOK_CONSUMER_LAG = MetricDef(
    "crypitor_webhook_consumer_lag", G,
    "Redis queue only: deliveries due now that no process has claimed yet (the consumer "
    "group's lag: a delivery enters the group's stream only when a process reads it). Grows "
    "when the fleet is too small; the backlog signal to scale out on.")
WEBHOOK_LEASED = MetricDef(
    "crypitor_webhook_leased_deliveries", G,
    "Redis queue only: deliveries claimed by some process of the fleet and not yet settled "
    "(the consumer group's pending entries).")
WEBHOOK_BUSY_ENDPOINTS = MetricDef(
    "crypitor_webhook_busy_endpoints", G,
    "Endpoints with more work than they take (slow answers or their rate limit): their "
    "deliveries wait along their own pace, so other endpoints' are not held up.")

# --- HTTP servers (the service API and the monitor's; `server` is "service" or "monitor") ---
HTTP_CLIENT_DISCONNECTS = MetricDef(
    "crypitor_http_client_disconnects_total", C,
    "Requests whose client hung up before its request was read or answered.", ("server",))
HTTP_AUTH_THROTTLED = MetricDef(
    "crypitor_http_auth_throttled_total", C,
    "Requests answered 429 because their address sent too many wrong API keys.", ("server",))

# --- chain followers (exported by service/, one `chain` label per [service.chains.NAME]) ----
FOLLOWER_HEAD = MetricDef(
    "crypitor_follower_head_block", G, "Head block the follower's node last reported.",
    ("chain",))
FOLLOWER_PROCESSED = MetricDef(
    "crypitor_follower_processed_block", G,
    "Last block whose transfers were matched and whose events are durably enqueued.",
    ("chain",))
FOLLOWER_LAG = MetricDef(
    "crypitor_follower_lag_blocks", G, "Blocks between the node's head and the last processed.",
    ("chain",))
FOLLOWER_REORGS = MetricDef(
    "crypitor_follower_reorgs_total", C,
    "Chain reorganisations seen: re-read, the node's chain no longer holds a block the "
    "follower processed.", ("chain",))
FOLLOWER_DEEP_REORGS = MetricDef(
    "crypitor_follower_deep_reorgs_total", C,
    "Reorganisations deeper than the chain's confirmations (or that moved a transfer already "
    "told confirmed): the confirmation depth is too small for that chain. Built-in alert "
    "FollowerDeepReorg.", ("chain",))
FOLLOWER_REORG_DEPTH = MetricDef(
    "crypitor_follower_reorg_depth_blocks", G,
    "Blocks rolled back by the last reorganisation.", ("chain",))
FOLLOWER_RPC_ERRORS = MetricDef(
    "crypitor_follower_rpc_errors_total", C,
    "Failed node calls, retried with backoff; kind is the transport failure (timeout, refused, "
    "connect, dns, tls, http_status, rate_limited, too_large), rpc_error, malformed or "
    "chain_id.", ("chain", "kind"))
FOLLOWER_NOT_READY = MetricDef(
    "crypitor_follower_not_ready_total", C,
    "Node answers the follower did not believe yet and asked again after a short wait: reason "
    "block_missing (the head is announced, the block not served yet), logs_contradicted (no "
    "logs where the block's logs bloom and receipts show Transfer logs), receipt_missing, "
    "inconsistent (parts of one block that disagree) or parent_mismatch (a block's parent that "
    "the chain, read again, does not show: no reorg).", ("chain", "reason"))
FOLLOWER_STORE_ERRORS = MetricDef(
    "crypitor_follower_store_errors_total", C,
    "Failed store writes or reads of a follower (the blocks are processed again).", ("chain",))
FOLLOWER_EVENTS = MetricDef(
    "crypitor_follower_events_total", C,
    "Events a follower enqueued, by kind (detected, confirmed, reverted); an event the queue "
    "already had (same idempotency key) is not counted again.", ("chain", "kind"))
FOLLOWER_PENDING = MetricDef(
    "crypitor_follower_unconfirmed_matches", G,
    "Detected matches waiting for their confirmations.", ("chain",))
FOLLOWER_LEADER = MetricDef(
    "crypitor_follower_leader", G,
    "1 while this process follows the chain (it holds the lease on its cursor), 0 while "
    "another process sharing the queue does.", ("chain",))

# --- service level objectives (`[[slos]]`, evaluated by the monitor) ----------------------
SLO_OBJECTIVE = MetricDef(
    "crypitor_slo_objective", G, "The SLO's objective as a ratio (99.9 % is 0.999).", ("slo",))
SLO_BUDGET_REMAINING = MetricDef(
    "crypitor_slo_error_budget_remaining", G,
    "Share of the error budget of the SLO's window still left (1 untouched, below 0 spent "
    "beyond it).", ("slo",))
SLO_BURN_RATE = MetricDef(
    "crypitor_slo_burn_rate", G,
    "How fast the SLO's error budget burns over the window: 1 spends exactly the budget over "
    "the SLO's window; built-in alert SLOBurnRate pages at 14.4 (1h and 5m) and 6 (6h and "
    "30m), and opens a ticket at 1 (3d and 6h).", ("slo", "window"))

# --- alerting (exported by alerts/) -------------------------------------------------------
ALERTS_FIRING = MetricDef(
    "crypitor_alerts_firing", G, "Alerts currently firing.", ("alertname", "severity"))
NOTIFICATIONS = MetricDef(
    "crypitor_notifications_total", C, "Notifications sent, by receiver and outcome.",
    ("receiver", "outcome"))

ALL: tuple[MetricDef, ...] = tuple(v for v in globals().values() if isinstance(v, MetricDef))

_BY_NAME = {m.name: m for m in ALL}


def bucket_label(bound: float) -> str:
    """A histogram bucket's `le` label value as the Prometheus client writes it ("60.0")."""
    return repr(float(bound))


def by_name(name: str) -> MetricDef:
    """The definition of `name`; KeyError when the catalog has no such metric."""
    return _BY_NAME[name]
