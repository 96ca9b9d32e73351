"""Tests of the chain followers (service/follow/)."""
