"""Loopback helpers shared by the tests."""

from __future__ import annotations

import socket

_given: set[int] = set()  # ports this process handed out already


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that this process has
    not handed out before: the kernel may give the port it just released to the next bind,
    so two calls before either port is in use could otherwise return the same one."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _given:
            _given.add(port)
            return port
    raise RuntimeError("no fresh loopback port in 1000 tries")
