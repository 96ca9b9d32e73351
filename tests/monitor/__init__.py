"""Tests of monitor/: config, runtime, exporters, HTTP surface and the command line."""
