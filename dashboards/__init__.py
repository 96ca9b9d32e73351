"""Dashboards as code: Grafana dashboards built from the metric catalog with
grafana-foundation-sdk, exported as files with provisioning YAML or pushed through Grafana's
HTTP API; and the Google Cloud Monitoring export of the same metrics."""
