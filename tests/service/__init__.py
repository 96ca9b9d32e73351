"""Tests of the `service` package, one folder per subpackage."""
