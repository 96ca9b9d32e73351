"""Schemathesis over the service API, from the `/openapi.json` a live service serves: for
every operation, a few dozen generated requests (valid and invalid ones, fixed seed) must get
no 5xx, only documented status codes and content types, and answers matching the schema.

The operations are collected from the description the package holds (Schemathesis needs
them before any server runs); the live service must serve exactly that document. It runs on
its own event loop in a thread (Schemathesis calls it synchronously); its dispatcher is
stopped, so generated endpoint URLs are never dialled. Requests go out through httpx:
grafana-client's niquests brings urllib3-future, which takes the `urllib3` name and breaks
the `requests` transport Schemathesis would use; `validate_response` takes httpx answers.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi import checks

from monitor.config import ChainFollowConfig, ServiceSection
from service.api.openapi import OPENAPI
from service.app import Service
from tests.support.net import free_port

KEY = "test-service-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLES = 30  # per operation: inside CI's time (the whole file takes under a minute)
# per operation; `serial`: its generated tests share one node id, which pytest-xdist runs
# once instead of once per operation, so `make test` runs this file without xdist
pytestmark = [pytest.mark.timeout(120), pytest.mark.serial]
# ignored_auth sends its probes through `requests` (see above); the auth is tested on its own.
# positive_data_acceptance expects 2xx for every schema-valid body, but some rules need the
# store or the config (an existing endpoint_id, a configured chain, an EIP-55 checksum).
# allow_header_conformance: `GET /v1/events/batch` is `GET /v1/events/{id}` of an event
# named "batch" (404), so the router's true `Allow` for that path includes GET.
EXCLUDED = [checks.ignored_auth, checks.positive_data_acceptance,
            checks.allow_header_conformance]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="service-under-test", daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    listen = f"127.0.0.1:{free_port()}"
    chains = {"ethereum": ChainFollowConfig("http://127.0.0.1:1", confirmations=12)}
    service = Service(ServiceSection(listen=listen, api_keys=(KEY,), chains=chains),
                      Path(tmp_path_factory.mktemp("service")))
    run(service.start())
    try:
        assert service.dispatcher is not None
        run(service.dispatcher.stop(0))  # the API alone is under test
        with urllib.request.urlopen(f"http://{listen}/openapi.json", timeout=10) as answer:
            assert json.load(answer) == json.loads(json.dumps(OPENAPI))
        yield f"http://{listen}"
    finally:
        run(service.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# 413 is how the service refuses too many events or addresses, as its description says;
# 429 how it refuses a wrong key once this address sent too many (the fuzzer sends dozens)
CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {
    "expected-statuses": [400, 401, 404, 405, 409, 413, 415, 422, 429]}}})
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(OPENAPI)), config=CONFIG)


@schema.parametrize()
@seed(20261206)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
def test_the_service_api_keeps_to_its_openapi_description(case: Any, base_url: str) -> None:
    request = case.as_transport_kwargs(base_url=base_url, headers=AUTH)
    if not request.get("cookies"):  # httpx deprecates per-request cookies
        request.pop("cookies", None)
    if "data" in request:  # a body that is not JSON: sent as the bytes or text it is
        request["content"] = request.pop("data")
    with httpx.Client(timeout=10) as http:
        response = http.request(**request)
    case.validate_response(response, headers=request["headers"], excluded_checks=EXCLUDED)
