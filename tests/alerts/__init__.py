"""Tests of alerts/: rules, state, routing, receivers."""
