"""Tests of probes/: each probe on real or documented targets, HTTP/1.1 messages, conditions."""
