"""Tests of the webhook delivery service (service/), by subpackage."""
