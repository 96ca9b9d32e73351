"""Google Cloud Monitoring export: the exporter task (`exporter`), the conversion of our
samples into TimeSeries (`series`) and what a failed call means (`errors`).
"""

from monitor.exporters.gcp.exporter import ExportStats, GcpExporter, GcpSettings

__all__ = ["ExportStats", "GcpExporter", "GcpSettings"]
