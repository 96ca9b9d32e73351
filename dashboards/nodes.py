"""The *Blockchain nodes* dashboard: head block, lag against the reference, head age, peers
and sync state per chain and node, filtered by the `chain` and `target` variables.

The chain gauges carry `chain`; `probe_success` and `probe_duration_seconds` carry it only
when a target sets it as a label, so those are joined to the nodes on `target`.
"""

from __future__ import annotations

from typing import Any

import catalog.metrics as m
from catalog import XRPL_HEALTHY_STATES, XRPL_SERVER_STATES
from dashboards.common import (
    COUNT,
    GREEN,
    NUMBER,
    ORANGE,
    RED,
    UP_DOWN,
    Page,
    mapped,
    query,
    query_variable,
    stat_panel,
    state_panel,
    table_panel,
    timeseries_panel,
    unit,
    up_count_panel,
    value_text,
)

UID = "crypitor-nodes"
TITLE = "Crypitor · Blockchain nodes"

SEL = '{chain=~"$chain", target=~"$target"}'
HEAD = m.CHAIN_HEAD.name
NODES = f"{HEAD}{SEL}"  # one series per selected node
LAG_STEPS = ((3.0, ORANGE), (5.0, RED))  # NodeLagging fires above 5 blocks
AGE_STEPS = ((60.0, ORANGE), (180.0, RED))  # NodeHeadStale fires above 180 s
SYNCING = value_text(("0", "synced", GREEN), ("1", "syncing", ORANGE))
# the catalog's ranks: not connected red, catching up (syncing, tracking) orange, healthy green
XRPL_STATES = value_text(*(
    (str(rank), state, GREEN if state in XRPL_HEALTHY_STATES
     else ORANGE if rank >= XRPL_SERVER_STATES.index("syncing") else RED)
    for rank, state in enumerate(XRPL_SERVER_STATES)))


def per_node(metric: str) -> str:
    return f"max by (chain, target) ({metric}{SEL})"


def node_probe(metric: str) -> str:
    """A per-target probe metric for the selected nodes, labelled with their chain."""
    return (f"max by (chain, target) (0 * {NODES})"
            f" + on (target) group_left () max by (target) ({metric})")


def build(prometheus_url: str) -> dict[str, Any]:
    rate = "$__rate_interval"
    page = (Page(UID, TITLE, "Head, lag, head age, peers and sync state of every probed node.",
                 prometheus_url)
            .variable(query_variable("chain", "Chain", HEAD, "chain"))
            .variable(query_variable("target", "Node", f'{HEAD}{{chain=~"$chain"}}', "target")))
    page.row("Now")
    page.add(up_count_panel("Nodes up",
                            query(f"sum({node_probe(m.PROBE_SUCCESS.name)})", instant=True),
                            description="Selected nodes whose last probe passed every check. "
                            "Red when none is up, and when there is no data."), 6, 4)
    page.add(stat_panel("Worst lag", NUMBER, query(f"max({m.CHAIN_LAG.name}{SEL})",
                                                   instant=True),
                        description="Blocks behind the reference, worst node.",
                        steps=LAG_STEPS, decimals=0), 6, 4)
    page.add(stat_panel("Oldest head", unit(m.CHAIN_HEAD_AGE),
                        query(f"max({m.CHAIN_HEAD_AGE.name}{SEL})", instant=True),
                        description="Age of the head block, worst node.",
                        steps=AGE_STEPS), 6, 4)
    page.add(stat_panel("Nodes syncing", COUNT,
                        query(f"sum({m.CHAIN_SYNCING.name}{SEL}) or vector(0)", instant=True),
                        steps=((1.0, ORANGE),)), 6, 4)
    page.add(table_panel(
        "Nodes", NUMBER,
        query(node_probe(m.PROBE_SUCCESS.name), table_format=True),
        query(per_node(HEAD), table_format=True),
        query(per_node(m.CHAIN_LAG.name), table_format=True),
        query(per_node(m.CHAIN_HEAD_AGE.name), table_format=True),
        query(per_node(m.CHAIN_PEERS.name), table_format=True),
        query(per_node(m.CHAIN_SYNCING.name), table_format=True),
        description="The last probe of every selected node.",
        columns=[("Up", NUMBER, "color-text"), ("Head block", NUMBER, ""),
                 ("Lag (blocks)", NUMBER, ""), ("Head age", unit(m.CHAIN_HEAD_AGE), ""),
                 ("Peers", NUMBER, ""), ("Syncing", NUMBER, "color-text")],
        overrides=[("Up", [mapped(UP_DOWN)]), ("Syncing", [mapped(SYNCING)])]), 24, 8)

    page.row("History")
    page.add(timeseries_panel("Head block", NUMBER,
                              query(per_node(HEAD), "{{chain}} · {{target}}"),
                              min_value=None, decimals=0), 12, 8)
    page.add(timeseries_panel(
        "Blocks per minute", NUMBER,
        query(f"60 * max by (chain, target) (deriv({NODES}[{rate}]))", "{{chain}} · {{target}}"),
        description="How fast each node's head grows; flat means a stuck node."), 12, 8)
    page.add(timeseries_panel("Lag against reference", NUMBER,
                              query(per_node(m.CHAIN_LAG.name), "{{chain}} · {{target}}"),
                              description="Blocks behind the target's `reference` node.",
                              steps=LAG_STEPS, decimals=0), 12, 8)
    page.add(timeseries_panel("Head age", unit(m.CHAIN_HEAD_AGE),
                              query(per_node(m.CHAIN_HEAD_AGE.name), "{{chain}} · {{target}}"),
                              description="Seconds since the head block's timestamp.",
                              steps=AGE_STEPS), 12, 8)
    page.add(timeseries_panel("Peers", NUMBER,
                              query(per_node(m.CHAIN_PEERS.name), "{{chain}} · {{target}}"),
                              base=RED, steps=((1.0, GREEN),), decimals=0), 12, 8)
    page.add(state_panel("Syncing",
                         query(per_node(m.CHAIN_SYNCING.name), "{{chain}} · {{target}}"),
                         mappings=[SYNCING]), 12, 8)
    page.add(timeseries_panel("RPC probe duration", unit(m.PROBE_DURATION),
                              query(node_probe(m.PROBE_DURATION.name), "{{chain}} · {{target}}"),
                              description="How long each node took to answer the probe."),
             12, 8)
    page.add(state_panel("Probe result",
                         query(node_probe(m.PROBE_SUCCESS.name), "{{chain}} · {{target}}"),
                         mappings=[UP_DOWN]), 12, 8)

    page.row("EOS and XRPL")
    page.add(timeseries_panel("EOS irreversible lag", NUMBER,
                              query(per_node(m.CHAIN_LIB_LAG.name), "{{chain}} · {{target}}"),
                              description="Blocks between head and last irreversible block.",
                              steps=((400.0, RED),), decimals=0), 8, 8)
    page.add(timeseries_panel("XRPL load factor", NUMBER,
                              query(per_node(m.CHAIN_LOAD_FACTOR.name),
                                    "{{chain}} · {{target}}"),
                              steps=((100.0, RED),)), 8, 8)
    page.add(state_panel("XRPL server state",
                         query(per_node(m.CHAIN_SERVER_STATE.name), "{{chain}} · {{target}}"),
                         mappings=[XRPL_STATES]), 8, 8)

    # the webhook service's followers are named by [service.chains.NAME], which need not be
    # a probe target's `chain` label: these panels show every follower, unfiltered
    page.row("Chain followers (address monitors)")
    page.add(timeseries_panel("Follower lag", NUMBER,
                              query(f"max by (chain) ({m.FOLLOWER_LAG.name})", "{{chain}}"),
                              description="Blocks between the node's head and the last block "
                              "whose events are enqueued.", steps=((10.0, ORANGE), (50.0, RED)),
                              decimals=0), 8, 8)
    page.add(timeseries_panel(
        "Transfer events", NUMBER,
        query(f"sum by (chain, kind) (rate({m.FOLLOWER_EVENTS.name}[{rate}]))",
              "{{chain}} · {{kind}}"),
        description="detected, confirmed and reverted events enqueued per second."), 8, 8)
    page.add(timeseries_panel(
        "Follower node errors", NUMBER,
        query(f"sum by (chain, kind) (rate({m.FOLLOWER_RPC_ERRORS.name}[{rate}]))",
              "{{chain}} · {{kind}}"),
        description="Failed node calls per second, retried with backoff."), 8, 8)
    page.add(timeseries_panel("Processed block", NUMBER,
                              query(f"max by (chain) ({m.FOLLOWER_PROCESSED.name})", "{{chain}}"),
                              min_value=None, decimals=0), 8, 8)
    page.add(stat_panel("Reorgs (24 h)", COUNT,
                        query(f"sum by (chain) (increase({m.FOLLOWER_REORGS.name}[24h]))",
                              "{{chain}}", instant=True)), 8, 8)
    page.add(timeseries_panel("Unconfirmed matches", NUMBER,
                              query(f"max by (chain) ({m.FOLLOWER_PENDING.name})", "{{chain}}"),
                              decimals=0), 8, 8)
    return page.build()

