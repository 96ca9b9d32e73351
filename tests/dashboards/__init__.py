"""Tests of dashboards/: the dashboards, their export and provisioning, the Grafana push."""
