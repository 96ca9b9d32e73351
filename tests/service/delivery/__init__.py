"""Tests of delivery: dispatcher, delivery state, pacing, SSRF guard (service/delivery/)."""
