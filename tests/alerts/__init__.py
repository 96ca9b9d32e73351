"""Tests of alerts/: rules, state, routing, receivers, the rules export."""
