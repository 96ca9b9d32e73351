"""Shared fixtures live in tests/support/; each module there is a pytest plugin."""

pytest_plugins = [
    "tests.support.chain_nodes",
    "tests.support.redis_server",
    "tests.support.service_proc",
    "tests.support.stores",
    "tests.support.web",
    "tests.support.fake_telegram",
    "tests.support.fake_gcp",
    "tests.support.fake_grafana",
]
