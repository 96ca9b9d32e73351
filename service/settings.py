"""What the service reads of `[service]`, stated as Protocols: `monitor.config.ServiceSection`
and `ChainFollowConfig` have these shapes (defaults and checks live there, once). Whoever builds
a `Service` resolves `env:` values first: the service sees keys and node URLs, never `env:`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from service.follow import ChainSettings


class ChainSection(ChainSettings, Protocol):
    """One `[service.chains.NAME]`: what its follower reads, and the node it reads from."""

    @property
    def rpc_url(self) -> str: ...
    @property
    def max_response_bytes(self) -> int: ...  # a node answer larger than this is refused


class ServiceSettings(Protocol):
    """`[service]`. `api_keys` empty: one is generated into the data directory. `chains`:
    the chains monitors may name, each followed by its own follower."""

    @property
    def listen(self) -> str: ...
    @property
    def queue(self) -> str: ...  # "sqlite" or a redis:// URL
    @property
    def api_keys(self) -> Sequence[str]: ...
    @property
    def allow_private_targets(self) -> bool: ...
    @property
    def allowed_networks(self) -> Sequence[str]: ...
    @property
    def retry_schedule(self) -> Sequence[float]: ...
    @property
    def request_timeout(self) -> float: ...
    @property
    def max_in_flight_per_endpoint(self) -> int: ...
    @property
    def disable_after(self) -> float: ...
    @property
    def shutdown_drain(self) -> float: ...  # seconds /readyz answers 503 before the close
    @property
    def shutdown_timeout(self) -> float: ...  # then seconds in-flight work has to finish
    @property
    def chains(self) -> Mapping[str, ChainSection]: ...
