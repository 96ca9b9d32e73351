"""The `rig` fixture: a follower's parts on the scripted node of `sim`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from chains.ethereum import EthereumClient
from monitor.config import ChainFollowConfig
from service.follow import FollowerMetrics
from tests.service.follow.sim import FakeStore, Rig, SimChain
from tests.support.chain_nodes import FakeNode


@pytest.fixture
async def rig(fake_node: FakeNode) -> AsyncIterator[Rig]:
    chain = SimChain()
    fake_node.answer("/", chain)
    registry = CollectorRegistry()
    async with aiohttp.ClientSession() as session:
        yield Rig(chain, FakeStore(), EthereumClient(session, fake_node.url, 2.0), registry,
                  FollowerMetrics.create(registry),
                  ChainFollowConfig(confirmations=2, poll_interval=0.01, start_block=1))
