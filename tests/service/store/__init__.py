"""Tests of `service.store`: the contract every backend passes, and what each alone promises."""
