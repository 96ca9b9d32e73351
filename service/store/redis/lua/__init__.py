"""The Redis backend's Lua scripts: the shared prelude, the queue's scripts (`queue`) and the
monitor and follower scripts (`monitors`). Each script is one atomic step between processes."""

from service.store.redis.lua import monitors, queue

__all__ = ["monitors", "queue"]
