"""Tests of alerts/, a file per module they test."""
