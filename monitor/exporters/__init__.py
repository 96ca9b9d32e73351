"""Where the probe results go besides the HTTP API: the Prometheus registry and collector
read at scrape (`prometheus`), and the Google Cloud Monitoring exporter (`gcp`).
"""

from monitor.exporters.gcp import GcpExporter
from monitor.exporters.prometheus import ProbeCollector, new_registry

__all__ = ["GcpExporter", "ProbeCollector", "new_registry"]
