"""The Redis backend's Lua scripts: the shared prelude, the queue's scripts and the monitor
and follower scripts. Each script is one atomic step between processes."""
