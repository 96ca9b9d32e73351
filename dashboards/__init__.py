"""Dashboards as code: Grafana dashboards built from the metric catalog with
grafana-foundation-sdk, exported as files with provisioning YAML (`export`) or pushed through
Grafana's HTTP API (`pusher`, `grafana_api`). The Google Cloud Monitoring export of the same
metrics is the monitor's (`monitor/`), not a dashboard."""
