"""Tests of the service's HTTP API (service/api/)."""
