"""Tests of core/: signing, leases."""
