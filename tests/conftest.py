"""Shared fixtures live in tests/support/; each module there is a pytest plugin."""

pytest_plugins = [  # a plugin that another imports comes first (assertion rewriting)
    "tests.support.web",
    "tests.support.chain_nodes",
    "tests.support.redis_server",
    "tests.support.redis_sentinel",
    "tests.support.service_proc",
    "tests.support.stores",
    "tests.support.fake_telegram",
    "tests.support.alert_sink",
    "tests.support.fake_gcp",
    "tests.support.fake_grafana",
]
