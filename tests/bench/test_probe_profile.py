"""`bench.probe_profile`, the breakdown `python -m bench.http_cpu` prints: own time goes to
the part whose code it is, shared code to its callers' parts in proportion, the rest to the
event loop; and a short real run of the monitor against a local HTTP server gives parts that
add up."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.http_cpu import our_config
from bench.probe_profile import LOOP, ORDER, Stats, attribute, part_of, profile_runtime

PROBE = ("/x/probes/httpwire.py", 1, "fetch")
SCHED = ("/x/monitor/runtime/scheduler.py", 1, "_run")
EVAL = ("/x/alerts/evaluate.py", 1, "observe")
GET = ("~", 0, "<method 'get' of 'dict' objects>")
HELPER = ("/usr/lib/python3.11/dataclasses.py", 1, "replace")
ORPHAN = ("~", 0, "<built-in method uvloop_thing>")


def test_parts_by_file_and_name() -> None:
    assert part_of(PROBE) == "probe I/O"
    assert part_of(SCHED) == "scheduler"
    assert part_of(("/x/monitor/app.py", 1, "_on_result")) == "state"
    assert part_of(("/x/monitor/app.py", 1, "reload")) is None
    assert part_of(("/x/alerts/alerting.py", 1, "observe")) == "evaluation"
    assert part_of(("/x/alerts/alerting.py", 1, "flush")) == "alert flush (1/s)"
    assert part_of(GET) is None


def test_shared_code_goes_to_its_callers_in_proportion() -> None:
    stats: Stats = {
        PROBE: (1, 1, 3.0, 6.0, {}),
        SCHED: (1, 1, 1.0, 2.0, {}),
        EVAL: (1, 1, 0.5, 0.5, {SCHED: (1, 1, 0.5, 0.5)}),
        # dict.get: 3 s of it under the probe, 1 s under the scheduler
        GET: (4, 4, 2.0, 2.0, {PROBE: (3, 3, 1.5, 3.0), SCHED: (1, 1, 0.5, 1.0)}),
        # a helper in a call cycle with itself, called from the evaluation only
        HELPER: (2, 2, 1.0, 1.0, {EVAL: (1, 1, 0.5, 0.5), HELPER: (1, 1, 0.5, 0.5)}),
        ORPHAN: (1, 1, 0.25, 0.25, {}),
    }
    parts = attribute(stats)
    assert list(parts) == list(ORDER)
    assert parts["probe I/O"] == pytest.approx(3.0 + 1.5)
    assert parts["scheduler"] == pytest.approx(1.0 + 0.5)
    assert parts["evaluation"] == pytest.approx(0.5 + 1.0)
    assert parts[LOOP] == pytest.approx(0.25)
    assert sum(parts.values()) == pytest.approx(sum(s[2] for s in stats.values()))


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server calls it by this name
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_short_run_gives_parts_that_add_up(server: str) -> None:
    breakdown = profile_runtime(our_config([f"{server}/t{i}" for i in range(5)]),
                                seconds=2.0, warmup=1.0, plain=1.0)
    assert breakdown.probes >= 5 and breakdown.plain_probes >= 1
    assert breakdown.plain_wakeups >= 1
    assert breakdown.parts["probe I/O"] > 0 and breakdown.parts["scheduler"] > 0
    assert breakdown.parts["evaluation"] > 0 and breakdown.parts["state"] > 0
    assert breakdown.scrape > 0
    text = "\n".join(breakdown.lines())
    for part in (*ORDER, "worker threads", "total, no profiler", "/metrics"):
        assert part in text
