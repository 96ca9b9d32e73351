"""The cluster's alert store: `alerts.store.Store` kept in Redis, so that whichever instance
leads the alerting continues where the last one stopped.

Writes only the leader may make (states with the results-stream cursor, the outbox with the
router state that produced it, the router's documents) run as one Lua call that first checks
`{p}:alerting:leader` still names this holder: a deposed leader's write is refused with
`alerts.NotLeader` and changes nothing. Silences, acknowledgements, queued Alertmanager alerts,
bot offsets and migrated chats are written by any instance, each as one atomic Redis command on
its own field (never a whole document read and written back), so writes from several instances
merge. Marks of delivery (sent, retry, failed) are facts about a message, not decisions: they
are not fenced. Blocking client (`connect_sync`): callers use `asyncio.to_thread`.

The incident log (alert transitions for the status page) is `{p}:alerting:incidents` (id →
JSON), `…:incidents:open` (fingerprint → id of its open incident) and `…:incidents:ended`
(id scored by when it ended), written by the leader only, where its flush sees transitions.

Bounded: the notification log keeps the newest LOG_KEEP notifications (an older one is
dropped once it is no longer pending), silences that ended and acknowledgements older than
`alerts.store.FORGET_AFTER` are dropped as they are read.

On a `redis+sentinel://` URL every write that records a decision or a delivery (the fenced
writes and the marks) then waits for one replica to have it (`WAIT 1`, up to REPLICA_WAIT):
a failover promotes a replica, and what only the old primary had would be lost. A write no
replica confirmed in time is kept and logged, not undone: at worst a notification whose
"sent" mark was lost is sent once more after a failover; none is lost (the states and the
stream cursor are written together, so a new leader re-derives what it does not find).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from alerts import NotLeader
from alerts.state import AlertState
from alerts.store import (
    ACKS_DOC,
    EXTERNAL_DOC,
    INCIDENTS_KEEP,
    INCIDENTS_KEEP_FOR,
    SILENCES_DOC,
    Outgoing,
    Queued,
    StateKey,
    forgotten,
)
from monitor.cluster.connection import connect_sync
from monitor.cluster.membership import PREFIX
from service.store import is_sentinel_url

log = logging.getLogger("crypitor.cluster")

SEP = "\x1f"
# documents only the leader writes; any other name (bot offsets, migrated chats) is written
# by whoever learns it
LEADER_DOCS = frozenset({"router", EXTERNAL_DOC, "snapshot"})
LOG_KEEP = 10_000  # notifications kept in the log (GET /api/v1/notifications shows the newest)
REPLICA_WAIT = 2.0  # seconds a write waits for a replica on a redis+sentinel:// URL

# KEYS[1]: the leader key. ARGV[1]: the holder; ARGV[2]: the alerting key prefix;
# ARGV[3]: JSON list of operations: ["outbox", receiver, body] appends to the outbox,
# anything else is a Redis command with its arguments; ARGV[4]: how many notifications the
# log keeps (the oldest beyond, no longer pending, are dropped). Returns 0 (refused) or 1.
_FENCED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local a = ARGV[2]
for _, op in ipairs(cjson.decode(ARGV[3])) do
  if op[1] == 'outbox' then
    local id = redis.call('INCR', a .. ':outbox:seq')
    redis.call('HSET', a .. ':outbox', id, op[3])
    redis.call('ZADD', a .. ':pending:' .. op[2], id, id)
    redis.call('ZADD', a .. ':log', id, id)
  else
    redis.call(unpack(op))
  end
end
local over = redis.call('ZCARD', a .. ':log') - tonumber(ARGV[4])
if over > 0 then
  for _, id in ipairs(redis.call('ZRANGE', a .. ':log', 0, over - 1)) do
    local body = redis.call('HGET', a .. ':outbox', id)
    local item = body and cjson.decode(body)
    if not item or item.status ~= 'pending' then
      redis.call('ZREM', a .. ':log', id)
      redis.call('HDEL', a .. ':outbox', id)
      if item and item.message_id ~= cjson.null and item.message_id ~= nil then
        redis.call('HDEL', a .. ':messages', tostring(item.chat_id) .. '\31' ..
                   string.format('%d', item.message_id))
      end
    end
  end
end
return 1
"""


class RedisAlertStore:
    """`alerts.store.Store` in Redis under `{prefix}:alerting:*`; fenced writes name `holder`
    (the alerting lease's holder id). `cursor` is the results stream's last entry taken in:
    the leader sets it and the next `save_states` writes it with the states."""

    def __init__(self, url: str, *, holder: str, prefix: str = PREFIX) -> None:
        self._redis = connect_sync(url)
        self._replicated = is_sentinel_url(url)
        self.log_keep = LOG_KEEP
        self.holder = holder
        self.prefix = prefix
        self._a = f"{prefix}:alerting"
        self.leader_key = f"{self._a}:leader"
        self._script = self._redis.register_script(_FENCED)  # loaded again when missing
        self.cursor: str | None = None
        self._cursor_written: str | None = None

    def close(self) -> None:
        self._redis.close()

    # --- fenced writes ---------------------------------------------------------------------
    def _fenced(self, ops: list[list[str]]) -> None:
        done = self._script(keys=[self.leader_key],
                            args=[self.holder, self._a, json.dumps(ops), self.log_keep])
        if not done:
            raise NotLeader(f"holder {self.holder} no longer leads the alerting")
        self._wait_replica()

    def _wait_replica(self) -> None:
        """On Sentinel: wait for one replica to have every write so far (see above)."""
        if self._replicated and int(self._redis.wait(1, int(REPLICA_WAIT * 1000))) < 1:
            log.warning("alerting: no replica confirmed a write within %gs; a failover now "
                        "could make a notification go out twice", REPLICA_WAIT)

    def stored_cursor(self) -> str | None:
        """The results stream's entry the stored states stand at (None: not started)."""
        value = self._redis.get(f"{self._a}:cursor")
        self._cursor_written = None if value is None else str(value)
        return self._cursor_written

    # --- alert states ----------------------------------------------------------------------
    def load_states(self) -> dict[StateKey, AlertState]:
        out: dict[StateKey, AlertState] = {}
        for field, body in self._redis.hgetall(f"{self._a}:states").items():
            rule, _, target = str(field).partition(SEP)
            out[(rule, target)] = AlertState.from_json(json.loads(body))
        return out

    def save_states(self, changed: Mapping[StateKey, AlertState]) -> None:
        """Inactive states with nothing to remember are deleted, the rest replaced; the
        cursor goes with them."""
        key = f"{self._a}:states"
        ops: list[list[str]] = []
        for (rule, target), state in changed.items():
            field = f"{rule}{SEP}{target}"
            if state.phase == "inactive" and state.streak == 0:
                ops.append(["HDEL", key, field])
            else:
                ops.append(["HSET", key, field, json.dumps(state.to_json())])
        cursor = self.cursor
        if cursor is not None and cursor != self._cursor_written:
            ops.append(["SET", f"{self._a}:cursor", cursor])
        if ops:
            self._fenced(ops)
            self._cursor_written = cursor

    # --- documents -------------------------------------------------------------------------
    def get(self, name: str) -> Any:
        body = self._redis.get(f"{self._a}:doc:{name}")
        return None if body is None else json.loads(body)

    def put(self, name: str, body: Any) -> None:
        key, text = f"{self._a}:doc:{name}", json.dumps(body)
        if name in LEADER_DOCS:
            self._fenced([["SET", key, text]])
        else:
            self._redis.set(key, text)

    # --- outbox ----------------------------------------------------------------------------
    def enqueue(self, items: Sequence[Outgoing], now: datetime,
                documents: Mapping[str, Any] | None = None) -> None:
        """Notifications and the documents that record them as produced, in one fenced
        call: a new leader finds both or neither."""
        ops = [["SET", f"{self._a}:doc:{name}", json.dumps(body)]
               for name, body in (documents or {}).items()]
        for i in items:
            ops.append(["outbox", i.receiver, json.dumps({
                "receiver": i.receiver, "kind": i.kind, "group_key": i.group_key,
                "alerts": [dict(a) for a in i.alerts], "text": i.text,
                "buttons": [list(b) for b in i.buttons], "created_at": now.isoformat(),
                "status": "pending", "attempts": 0, "next_try_at": now.isoformat(),
                "sent_at": None, "chat_id": None, "message_id": None, "error": None})])
        if ops:
            self._fenced(ops)

    def _item(self, item_id: int) -> dict[str, Any] | None:
        body = self._redis.hget(f"{self._a}:outbox", str(item_id))
        return None if body is None else {"id": item_id, **json.loads(body)}

    def next_pending(self, receiver: str) -> tuple[Queued, datetime] | None:
        """The oldest unsent notification of a receiver and when it may be tried."""
        ids = [str(i) for i in self._redis.zrange(f"{self._a}:pending:{receiver}", 0, 0)]
        if not ids:
            return None
        item = self._item(int(ids[0]))
        if item is None:  # cannot happen: both are written in one call
            self._redis.zrem(f"{self._a}:pending:{receiver}", ids[0])
            return None
        buttons = tuple((str(a), str(b)) for a, b in item["buttons"])
        reply_to = None
        if item["kind"] == "resolved":  # a reply to the group's last FIRING, as on SQLite
            last = self._redis.hget(f"{self._a}:last-firing",
                                    f"{item['receiver']}{SEP}{item.get('group_key', '')}")
            if last:
                chat, _, message = str(last).partition(SEP)
                reply_to = (chat, int(message))
        return (Queued(item["id"], item["receiver"], item["kind"], item["text"], buttons,
                       int(item["attempts"]), reply_to),
                datetime.fromisoformat(item["next_try_at"]))

    def _mark(self, item_id: int, changes: Mapping[str, Any], done: bool) -> None:
        item = self._item(item_id)
        if item is None:
            return
        item.update(changes)
        item["attempts"] = int(item["attempts"]) + 1
        del item["id"]
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(f"{self._a}:outbox", str(item_id), json.dumps(item))
        if done:
            pipe.zrem(f"{self._a}:pending:{item['receiver']}", str(item_id))
        if item.get("message_id") is not None:
            pipe.hset(f"{self._a}:messages", f"{item['chat_id']}{SEP}{item['message_id']}",
                      str(item_id))
            if item["kind"] == "firing" and item.get("status") == "sent":
                pipe.hset(f"{self._a}:last-firing",
                          f"{item['receiver']}{SEP}{item.get('group_key', '')}",
                          f"{item['chat_id']}{SEP}{item['message_id']}")
        pipe.execute()
        self._wait_replica()

    def mark_sent(self, item_id: int, chat_id: str, message_id: int, now: datetime) -> None:
        self._mark(item_id, {"status": "sent", "sent_at": now.isoformat(), "chat_id": chat_id,
                             "message_id": message_id, "error": None}, done=True)

    def mark_retry(self, item_id: int, error: str, next_try_at: datetime) -> None:
        self._mark(item_id, {"error": error, "next_try_at": next_try_at.isoformat()},
                   done=False)

    def mark_failed(self, item_id: int, error: str) -> None:
        self._mark(item_id, {"status": "failed", "error": error}, done=True)

    def history(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest notifications first, as `AlertStore.history` gives them."""
        ids = [str(i) for i in self._redis.zrevrange(f"{self._a}:log", 0, limit - 1)]
        if not ids:
            return []
        bodies = self._redis.hmget(f"{self._a}:outbox", ids)
        out = []
        for item_id, body in zip(ids, bodies, strict=True):
            if body is None:
                continue
            item = {"id": int(item_id), **json.loads(body)}
            item.pop("buttons", None)
            item.pop("next_try_at", None)
            out.append(item)
        return out

    def message_of(self, chat_id: str, message_id: int) -> dict[str, Any] | None:
        """The sent notification behind a Telegram message (for button presses)."""
        item_id = self._redis.hget(f"{self._a}:messages", f"{chat_id}{SEP}{message_id}")
        item = None if item_id is None else self._item(int(item_id))
        return None if item is None else {"id": item["id"], "text": item["text"],
                                          "alerts": item["alerts"]}

    # --- merged from any instance ----------------------------------------------------------
    def silences(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every silence (sorted by id); those that ended more than FORGET_AFTER before
        `now` are dropped from Redis instead."""
        key = f"{self._a}:{SILENCES_DOC}"
        out, gone = [], []
        for silence_id, body in sorted(self._redis.hgetall(key).items()):
            item = json.loads(body)
            if now is not None and forgotten(item.get("ends_at"), now):
                gone.append(silence_id)
            else:
                out.append(item)
        if gone:
            self._redis.hdel(key, *gone)
        return out

    def put_silence(self, silence: Mapping[str, Any]) -> None:
        self._redis.hset(f"{self._a}:{SILENCES_DOC}", str(silence["id"]),
                         json.dumps(dict(silence)))

    def acks(self, now: datetime | None = None) -> dict[str, dict[str, str]]:
        """Acknowledgements by fingerprint; those older than FORGET_AFTER before `now` are
        dropped from Redis instead."""
        key = f"{self._a}:{ACKS_DOC}"
        out: dict[str, dict[str, str]] = {}
        gone = []
        for fingerprint, body in self._redis.hgetall(key).items():
            item = json.loads(body)
            if now is not None and forgotten(item.get("at"), now):
                gone.append(fingerprint)
            else:
                out[str(fingerprint)] = item
        if gone:
            self._redis.hdel(key, *gone)
        return out

    def ack(self, fingerprint: str, who: str, at: datetime) -> None:
        self._redis.hset(f"{self._a}:{ACKS_DOC}", fingerprint,
                         json.dumps({"by": who, "at": at.isoformat()}))

    def queue_external(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        if alerts:
            self._redis.rpush(f"{self._a}:external-queue",
                              *(json.dumps(dict(a)) for a in alerts))

    def queued_external(self) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self._redis.lrange(f"{self._a}:external-queue", 0, -1)]

    def consume_external(self, count: int, body: Any) -> None:
        self._fenced([["LTRIM", f"{self._a}:external-queue", str(count), "-1"],
                      ["SET", f"{self._a}:doc:{EXTERNAL_DOC}", json.dumps(body)]])


    # --- the incident log (the leader writes it, where its flush sees transitions) ----------
    def log_incidents(self, events: Sequence[Mapping[str, str]]) -> None:
        if not events:
            return
        key, open_key, ended = (f"{self._a}:incidents", f"{self._a}:incidents:open",
                                f"{self._a}:incidents:ended")
        for e in events:  # each read sees the writes of the events before it
            fp = e["fingerprint"]
            current = self._redis.hget(open_key, fp)
            pipe = self._redis.pipeline(transaction=True)
            if e["status"] == "firing":
                if current is not None:
                    continue
                item_id = str(self._redis.incr(f"{self._a}:incidents:seq"))
                pipe.hset(key, item_id, json.dumps(_incident(e, None)))
                pipe.hset(open_key, fp, item_id)
                pipe.execute()
                continue
            body = None if current is None else self._redis.hget(key, current)
            if current is not None and body is not None:
                item_id, item = str(current), json.loads(body)
                item["resolved_at"] = e["at"]
                pipe.hdel(open_key, fp)
            else:
                item_id = str(self._redis.incr(f"{self._a}:incidents:seq"))
                item = _incident(e, e["at"])
            pipe.hset(key, item_id, json.dumps(item))
            pipe.zadd(ended, {item_id: datetime.fromisoformat(e["at"]).timestamp()})
            pipe.execute()
        cutoff = (datetime.fromisoformat(events[-1]["at"]) - INCIDENTS_KEEP_FOR).timestamp()
        gone = [str(i) for i in self._redis.zrangebyscore(ended, "-inf", f"({cutoff}")]
        over = int(self._redis.zcard(ended)) - len(gone) - INCIDENTS_KEEP
        if over > 0:
            gone += [str(i) for i in self._redis.zrange(ended, len(gone), len(gone) + over - 1)]
        if gone:
            self._redis.hdel(key, *gone)
            self._redis.zrem(ended, *gone)

    def incidents(self, since: datetime) -> list[dict[str, Any]]:
        key = f"{self._a}:incidents"
        ids = [str(i) for i in self._redis.hvals(f"{self._a}:incidents:open")]
        ids += [str(i) for i in self._redis.zrangebyscore(f"{self._a}:incidents:ended",
                                                          since.timestamp(), "+inf")]
        if not ids:
            return []
        out = [{"id": i, **json.loads(body)}
               for i, body in zip(ids, self._redis.hmget(key, ids), strict=True)
               if body is not None]
        return sorted(out, key=lambda x: (str(x["started_at"]), int(x["id"])), reverse=True)


def _incident(event: Mapping[str, str], resolved_at: str | None) -> dict[str, Any]:
    return {"fingerprint": event["fingerprint"], "alertname": event["alertname"],
            "target": event["target"], "severity": event["severity"],
            "summary": event["summary"], "started_at": event["started_at"] or event["at"],
            "resolved_at": resolved_at}
