"""Tests of chains/: the RPC clients, their response parsing, and Keccak-256 / EIP-55."""
