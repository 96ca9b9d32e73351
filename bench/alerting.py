"""Alert latency: seconds from a target going down to the alert message arriving, crypitor
against Prometheus + Alertmanager, both watching the same outage in the same run.

crypitor probes every `--interval` (its default 30 s) and its built-in TargetDown fires on the
third failed probe in a row, i.e. the failure held for 2 intervals; its route waits
group_wait 10 s; the message is a sendMessage to a fake Telegram Bot API. Prometheus and
Alertmanager keep their documented defaults (scrape and evaluation every 1 m, group_wait
30 s), with the equivalent rule `up{job="target"} == 0` held `for: 2 x interval`; their
message is Alertmanager's webhook reaching a local sink.

Expected, from the timers alone: crypitor 2 x interval + 10 s to 3 x interval + 10 s (the
first failed probe comes 0 to 1 interval after T0); Prometheus + Alertmanager: the next scrape
(0 to 1 m), the next evaluation after it (0 to 1 m), `for` rounded up to whole evaluations
(1 m), then group_wait 30 s: 90 s to 210 s.

Each trial takes down its own target (500 on every path, so the scrape fails too) at a random
moment, so both schedulers are met at a random phase, and brings it back once both alerted.
Each trial has its own alert group on both sides (crypitor groups by alertname and target,
Alertmanager here by alertname and instance), so no trial waits on an earlier group's
group_interval and Alertmanager's resolved message (5 m later) need not be awaited.

    .venv/bin/python -m bench.alerting [--trials 3] [--interval 30s] [--limit 300] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from bench.alert_peers import Peers, alertmanager, crypitor, peers, prometheus
from monitor.config import format_duration, parse_duration

GROUP_WAIT = 10.0  # crypitor's default [alerts.route] group_wait
PHASE = 60.0  # Prometheus' scrape and evaluation cycle: T0 falls anywhere in it
POLL = 0.1  # seconds between looks; arrival times are stamped by the servers themselves
TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True)
class Trial:
    target: str
    instance: str
    pause: float  # seconds waited before T0
    ours: float | None  # T0 to the Telegram message; None: no alert within the limit
    theirs: float | None  # T0 to Alertmanager's webhook
    ours_detect: float | None  # T0 to crypitor's first failed probe
    theirs_detect: float | None  # T0 to the first rule evaluation that saw up == 0
    theirs_fired: float | None  # T0 to Prometheus firing the alert (the webhook's startsAt)
    up_at: float  # monotonic time the target answered 200 again
    ours_resolved: float | None  # target up to crypitor's RESOLVED message


# --- looking at the pipelines ---------------------------------------------------------------
def our_message(p: Peers, target: str, word: str, since: float) -> float | None:
    """Arrival of the first crypitor message with `word` (FIRING/RESOLVED) for `target`."""
    pattern = re.compile(rf"\b{word}\b.*\btarget={re.escape(target)}\b", re.S)
    return next((m.at for m in p.messages if m.at >= since and pattern.search(m.text)), None)


def their_webhook(p: Peers, instance: str, status: str, since: float) -> float | None:
    return next((a.at for a in p.sink.alerts
                 if a.at >= since and a.instance == instance and a.status == status), None)


async def get_json(http: aiohttp.ClientSession, url: str, **params: str) -> Any:
    async with http.get(url, params=params) as resp:
        resp.raise_for_status()
        return await resp.json()


def parse_time(text: str | None) -> float | None:
    """Unix seconds of an RFC 3339 time, Go's nanoseconds cut to Python's microseconds."""
    if not text or text.startswith("0001-"):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


async def wait_ready(http: aiohttp.ClientSession, prom: int, ours: int,
                     p: Peers, seconds: float) -> None:
    """Until Prometheus has scraped every target (up == 1) and crypitor sees each up."""
    deadline = time.monotonic() + seconds
    want = {t.address for t in p.targets}
    while True:
        body = await get_json(http, f"http://127.0.0.1:{prom}/api/v1/query",
                              query='up{job="target"} == 1')
        scraped = {r["metric"]["instance"] for r in body["data"]["result"]}
        states = await get_json(http, f"http://127.0.0.1:{ours}/api/v1/targets")
        if scraped >= want and all(s["up"] is True for s in states):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {seconds:g}s: Prometheus scraped "
                               f"{sorted(scraped)}, crypitor {[s['up'] for s in states]}")
        await asyncio.sleep(0.5)


async def settings(http: aiohttp.ClientSession, prom: int, am: int) -> str:
    """The peers' effective timing, read back from them rather than assumed."""
    conf = (await get_json(http, f"http://127.0.0.1:{prom}/api/v1/status/config"))["data"]
    amconf = (await get_json(http, f"http://127.0.0.1:{am}/api/v2/status"))["config"]

    def find(key: str, yaml: str) -> str:
        found = re.search(rf"\b{key}: (\S+)", yaml)
        return found.group(1) if found else "?"

    # Alertmanager shows route timers only when set; unset, its defaults apply
    timers = [k for k in ("group_wait", "group_interval", "repeat_interval")
              if find(k, amconf["original"]) != "?"]
    am_timing = ("group_wait 30s, group_interval 5m (defaults)" if not timers
                 else "route timers set: " + ", ".join(timers))
    return (f"Prometheus scrape_interval {find('scrape_interval', conf['yaml'])}, "
            f"evaluation_interval {find('evaluation_interval', conf['yaml'])}; "
            f"Alertmanager {am_timing}")


# --- one trial -----------------------------------------------------------------------------
async def wait_firing(p: Peers, name: str, instance: str, t0: float,
                      limit: float) -> tuple[float | None, float | None]:
    """Arrivals of crypitor's FIRING message and Alertmanager's firing webhook for this
    target, waiting until both came or `limit` seconds after `t0` passed."""
    ours = theirs = None
    while time.monotonic() < t0 + limit and (ours is None or theirs is None):
        await asyncio.sleep(POLL)
        ours = ours or our_message(p, name, "FIRING", t0)
        theirs = theirs or their_webhook(p, instance, "firing", t0)
    return ours, theirs


async def where_time_went(http: aiohttp.ClientSession, p: Peers, name: str, instance: str,
                          prom: int, ours: int, t0: float) -> tuple[float | None, ...]:
    """Wall-clock times of crypitor's first failed probe, of the first Prometheus evaluation
    that saw up == 0 and of Prometheus firing; read while the outage lasts."""
    state = await get_json(http, f"http://127.0.0.1:{ours}/api/v1/targets/{name}")
    ours_detect = parse_time(state["since"]) if state["up"] is False else None
    alerts = (await get_json(http, f"http://127.0.0.1:{prom}/api/v1/alerts"))["data"]["alerts"]
    active = [a for a in alerts if a["labels"].get("instance") == instance]
    theirs_detect = parse_time(active[0]["activeAt"]) if active else None
    fired = [a.starts_at for a in p.sink.alerts
             if a.instance == instance and a.status == "firing" and a.at >= t0]
    return ours_detect, theirs_detect, parse_time(fired[0]) if fired else None


async def wait_resolved(p: Peers, name: str, up_at: float, seconds: float) -> float | None:
    """Arrival of crypitor's RESOLVED message: after two clean probes in a row, at the
    group's next group_interval tick."""
    deadline = up_at + seconds
    resolved = None
    while resolved is None and time.monotonic() < deadline:
        await asyncio.sleep(POLL)
        resolved = our_message(p, name, "RESOLVED", up_at)
    return resolved


async def trial(http: aiohttp.ClientSession, p: Peers, k: int, prom: int, ours: int,
                interval: float, limit: float, rng: random.Random) -> Trial:
    target = p.targets[k]
    pause = rng.uniform(0, PHASE)
    await asyncio.sleep(pause)
    target.down = True
    t0, t0_wall = time.monotonic(), time.time()
    print(f"trial {k + 1}: {target.name} down", flush=True)
    ours_at, theirs_at = await wait_firing(p, target.name, target.address, t0, limit)
    walls = await where_time_went(http, p, target.name, target.address, prom, ours, t0)
    target.down = False
    up_at = time.monotonic()
    print(f"trial {k + 1}: {target.name} up again", flush=True)
    # two clean probes, then at most crypitor's group_interval (1 m), plus slack
    resolved = (None if ours_at is None
                else await wait_resolved(p, target.name, up_at, 2 * interval + 90))
    ours_detect, theirs_detect, theirs_fired = (None if w is None else w - t0_wall
                                                for w in walls)
    return Trial(target.name, target.address, pause,
                 None if ours_at is None else ours_at - t0,
                 None if theirs_at is None else theirs_at - t0,
                 ours_detect, theirs_detect, theirs_fired,
                 up_at, None if resolved is None else resolved - up_at)


# --- the report ----------------------------------------------------------------------------
def _s(value: float | None, missing: str = "no alert") -> str:
    return missing if value is None else f"{value:.1f} s"


def _median(values: Sequence[float | None]) -> float:
    """A missing alert counts as later than any delivered one."""
    return statistics.median(float("inf") if v is None else v for v in values)


def report(trials: Sequence[Trial], p: Peers, interval: float, hold: float, limit: float,
           peer_settings: str, took: float) -> None:
    iv = format_duration(interval)
    n = f"{len(trials)} trial" + ("s" if len(trials) != 1 else "")
    print(f"\nAlert latency, target down -> message arrives ({n}, same outages seen by both)")
    print(f"crypitor: probe every {iv}, TargetDown on the 3rd failed probe in a row (held "
          f"2 x {iv}), group_wait {GROUP_WAIT:g} s, Telegram sendMessage")
    print(f"Prometheus + Alertmanager: up{{job=\"target\"}} == 0 for {format_duration(hold)}"
          f" (= 2 x {iv}), {peer_settings}, webhook")
    print(f"\n{'trial':<7}{'pause':>7}{'crypitor':>11}{'Prom+AM':>11}{'ratio':>8}"
          f"  | {'detect':>8}{'detect':>9}{'fired':>9}  | {'resolved':>9}{'resolved':>10}")
    print(f"{'':7}{'':7}{'':11}{'':11}{'':8}  | {'ours':>8}{'theirs':>9}{'theirs':>9}"
          f"  | {'ours':>9}{'theirs':>10}")
    for i, t in enumerate(trials, 1):
        ratio = f"{t.theirs / t.ours:.2f}x" if t.ours and t.theirs else "-"
        late = their_webhook(p, t.instance, "resolved", t.up_at)
        print(f"{i:<7}{t.pause:>5.1f} s{_s(t.ours):>11}{_s(t.theirs):>11}{ratio:>8}"
              f"  | {_s(t.ours_detect, '-'):>8}{_s(t.theirs_detect, '-'):>9}"
              f"{_s(t.theirs_fired, '-'):>9}  | {_s(t.ours_resolved, '-'):>9}"
              f"{_s(None if late is None else late - t.up_at, 'later'):>10}")
    ours = _median([t.ours for t in trials])
    theirs = _median([t.theirs for t in trials])
    ratio = f"{theirs / ours:.2f}x" if ours and theirs != float("inf") else "-"
    print(f"{'median':<14}{ours:>9.1f} s{theirs:>9.1f} s{ratio:>8}")
    print(f"\ndetect: T0 to crypitor's first failed probe / to the first Prometheus evaluation "
          f"that saw up == 0; fired: to Prometheus firing (the webhook's startsAt); resolved: "
          f"target up to the resolved message (crypitor: two clean probes in a row, then "
          f"its group_interval tick; 'later': after the run, Alertmanager sends it at its "
          f"group_interval tick); 'no alert': nothing within {limit:g} s")

    bound = 3 * interval + GROUP_WAIT + 1
    each = all(t.ours is not None and t.ours <= bound for t in trials)
    faster = ours < theirs
    print(f"\ncrypitor within 3 x {iv} + {GROUP_WAIT:g} s + 1 s = {bound:g} s on every trial: "
          f"{'yes' if each else 'NO'}; crypitor median below Prometheus + Alertmanager's: "
          f"{'yes' if faster else 'NO'}")
    print(f"goal: {'met' if each and faster else 'NOT met'}")
    print(f"took {int(took // 60)}m{int(took % 60):02d}s")


async def run(args: argparse.Namespace) -> None:
    started = time.monotonic()
    interval = parse_duration(args.interval)
    hold = 2 * interval
    rng = random.Random(args.seed)
    names = [f"trial{k + 1:02d}" for k in range(args.trials)]
    async with (peers(names) as p,
                aiohttp.ClientSession(timeout=TIMEOUT) as http,
                alertmanager(f"http://127.0.0.1:{p.sink.port}/hook") as am,
                prometheus([t.address for t in p.targets], am,
                           format_duration(hold)) as prom,
                crypitor(p.targets, p.telegram, args.interval) as ours):
        print("waiting for Prometheus' first scrape of every target ...", flush=True)
        await wait_ready(http, prom, ours, p, 2 * PHASE + interval + 30)
        print(f"ready after {time.monotonic() - started:.0f} s", flush=True)
        peer_settings = await settings(http, prom, am)
        trials = [await trial(http, p, k, prom, ours, interval, args.limit, rng)
                  for k in range(args.trials)]
    report(trials, p, interval, hold, args.limit, peer_settings, time.monotonic() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--interval", default="30s", help="crypitor's probe interval (30s)")
    ap.add_argument("--limit", type=float, default=300.0,
                    help="seconds after T0 to give up on an alert")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
