"""Schemathesis over the monitor's own /openapi.json (issue 12): for every operation a few
dozen generated requests, valid and invalid, with a fixed seed; none may get a server error,
an undocumented status code or content type, a body off its schema, or an invalid request
accepted.

Schemathesis' own `requests` transport cannot run here: grafana-client brings
urllib3-future, which replaces urllib3 under `requests` (its pool manager lacks what
schemathesis counts connections with), so the requests go through httpx and schemathesis
judges the responses.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.monitor_app import MONITOR_KEY, running_monitor

pytestmark = pytest.mark.timeout(300)
EXAMPLES = 30  # per operation and generation mode
SEED = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]


def fuzz(base: str, spec: dict[str, Any]) -> tuple[list[str], Counter[str]]:
    """Every operation of `spec`, positive and negative cases; the failures, and how many
    requests each operation got."""
    schema = schemathesis.openapi.from_dict(spec)
    auth = {"Authorization": f"Bearer {MONITOR_KEY}"}
    failures: list[str] = []
    sent: Counter[str] = Counter()
    with httpx.Client(timeout=10) as client:
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                failures.append(f"the description does not load: {result.err()}")
                continue
            operation = result.ok()
            for mode in (schemathesis.GenerationMode.POSITIVE,
                         schemathesis.GenerationMode.NEGATIVE):

                @seed(SEED)
                @settings(max_examples=EXAMPLES, database=None, deadline=None,
                          phases=[Phase.explicit, Phase.generate],
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def one(case: Any) -> None:
                    kw = case.as_transport_kwargs(base_url=base, headers=auth)
                    data = kw.get("data")
                    response = client.request(
                        kw["method"], kw["url"], headers=kw.get("headers"),
                        params=kw.get("params"), json=kw.get("json"),
                        content=data if isinstance(data, bytes | str) else None)
                    sent[case.operation.label] += 1
                    case.validate_response(response, checks=CHECKS, headers=auth)

                try:
                    one()
                except BaseException as exc:  # schemathesis raises a FailureGroup
                    if "Unable to satisfy assumptions" in str(exc):
                        continue  # no invalid input exists (GET without parameters)
                    failures.append(f"{operation.label} ({mode.value}): {exc}"[:3000])
    return failures, sent


async def test_schemathesis_finds_nothing_on_the_monitor_api(tmp_path: Path) -> None:
    async with running_monitor(tmp_path) as m:
        base = f"http://{m.config.monitor.listen}"
        async with aiohttp.ClientSession() as http, http.get(f"{base}/openapi.json") as resp:
            spec = await resp.json()
        failures, sent = await asyncio.to_thread(fuzz, base, spec)
    assert not failures, "\n\n".join(failures)
    # every operation was exercised, the bodies' ones with many cases
    assert set(sent) == {f"{method.upper()} {path}" for path, item in spec["paths"].items()
                         for method in item}
    assert sent["POST /api/v1/silences"] >= EXAMPLES and sent["POST /api/v1/alertmanager"] >= 10
