"""The composition root: config, scheduler, metrics export, HTTP API, status page and CLI.

This is the only package that wires the others together; everything it builds (metrics
registry, HTTP session, stores, clock) is passed down, never reached as a global.
"""

__version__ = "0.1.0"
