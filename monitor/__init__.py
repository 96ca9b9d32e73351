"""The composition root: config, scheduler, metrics export, HTTP API, status page and CLI.

Its parts are `config/` (the schema of config.toml), `runtime/` (scheduler, target state,
uptime history), `exporters/` (Prometheus, Google Cloud Monitoring) and `web/` (the HTTP
surface); `app`, `alerting_setup`, `service_setup` and `cli` wire them to the other packages.
This is the only package that wires the others together; everything it builds (metrics
registry, HTTP session, stores, clock) is passed down, never reached as a global.
"""

__version__ = "0.1.0"
