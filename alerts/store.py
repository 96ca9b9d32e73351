"""What alerting keeps: alert states, small documents (the router's group state, silences,
acknowledgements, the Telegram update offset and migrated chats) and the outbox. `Store` is
what alerting asks of it; `AlertStore` keeps it in `data_dir/alerts.sqlite3` (one instance),
`monitor.cluster.alert_store.RedisAlertStore` in the cluster's Redis.

The outbox is the durability seam: a notification is written, in the same transaction as
the router state that produced it, before anything is sent, and marked after Telegram
answered. A restart or a Telegram outage therefore delays notifications but loses none; the
only way to send one twice is a crash in the instant between Telegram's answer and the mark.
Every method is synchronous and short; callers run them through `asyncio.to_thread`.

The schema's version is `PRAGMA user_version` (VERSION); files from before it read 0 and
have the same tables, so they are stamped and read as they are. A file of any other version
(a newer build's) is refused with `core.formats.FormatError` naming it, never misread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from alerts.state import AlertState
from core.files import private_database
from core.formats import sqlite_version

VERSION = 1  # the incidents table came later, additively: older builds ignore it
READABLE = (0, VERSION)  # 0: written before the schema carried a version, same tables
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS alert_states (
    rule TEXT NOT NULL, target TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (rule, target)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, receiver TEXT NOT NULL, kind TEXT NOT NULL,
    group_key TEXT NOT NULL, alerts TEXT NOT NULL, text TEXT NOT NULL, buttons TEXT NOT NULL,
    created_at TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
    next_try_at TEXT NOT NULL, sent_at TEXT, chat_id TEXT, message_id INTEGER, error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (receiver, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_sent_firing ON outbox (receiver, group_key, id)
    WHERE status = 'sent' AND kind = 'firing';
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT NOT NULL, alertname TEXT NOT NULL,
    target TEXT NOT NULL, severity TEXT NOT NULL, summary TEXT NOT NULL,
    started_at TEXT NOT NULL, resolved_at TEXT
);
CREATE INDEX IF NOT EXISTS incidents_open ON incidents (fingerprint) WHERE resolved_at IS NULL;
PRAGMA user_version = {VERSION};
"""
StateKey = tuple[str, str]  # (rule, target)
FORGET_AFTER = timedelta(days=7)
INCIDENTS_KEEP_FOR = timedelta(days=30)  # an incident is dropped this long after it ended
INCIDENTS_KEEP = 5_000  # and the log never holds more than this many
INCIDENT_KEYS = ("fingerprint", "alertname", "target", "severity", "summary", "started_at",
                 "resolved_at")  # ended silences and old acknowledgements are dropped then
SILENCES_DOC, ACKS_DOC, EXTERNAL_DOC, EXTERNAL_QUEUE_DOC = (
    "silences", "acks", "external", "external-queue")


@dataclass(frozen=True)
class Outgoing:
    """A notification to write into the outbox: already rendered for its receiver."""

    receiver: str
    kind: str  # firing | resolved | reply
    group_key: str
    alerts: Sequence[Mapping[str, str]]  # alertname, target, status, fingerprint: for history
    text: str
    buttons: Sequence[Sequence[str]] = ()  # (label, callback data) pairs


@dataclass(frozen=True)
class Queued:
    id: int
    receiver: str
    kind: str
    text: str
    buttons: tuple[tuple[str, str], ...]
    attempts: int
    # a resolved notification's group's last sent firing one (chat id, message id), which
    # Telegram replies to; None when there is none (or the store does not say)
    reply_to: tuple[str, int] | None = None


class Store(Protocol):
    """What alerting asks of its store. Every method is synchronous and short (callers run
    them through `asyncio.to_thread`). A shared store (Redis) refuses the writes that only
    the alerting leader may make (`save_states`, `enqueue`, `consume_external` and `put` of
    the router's documents) with `alerts.NotLeader` once another instance leads; silences,
    acknowledgements and queued external alerts are merged from any instance."""

    def close(self) -> None: ...
    def load_states(self) -> dict[StateKey, AlertState]: ...
    def save_states(self, changed: Mapping[StateKey, AlertState]) -> None: ...
    def get(self, name: str) -> Any: ...
    def put(self, name: str, body: Any) -> None: ...
    def enqueue(self, items: Sequence[Outgoing], now: datetime,
                documents: Mapping[str, Any] | None = None) -> None: ...
    def next_pending(self, receiver: str) -> tuple[Queued, datetime] | None: ...
    def mark_sent(self, item_id: int, chat_id: str, message_id: int, now: datetime) -> None: ...
    def mark_retry(self, item_id: int, error: str, next_try_at: datetime) -> None: ...
    def mark_failed(self, item_id: int, error: str) -> None: ...
    def history(self, limit: int = 100) -> list[dict[str, Any]]: ...
    def message_of(self, chat_id: str, message_id: int) -> dict[str, Any] | None: ...

    def silences(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every stored silence (`Silence.to_dict()`), ended ones included, except those
        that ended more than FORGET_AFTER before `now` (dropped)."""

    def put_silence(self, silence: Mapping[str, Any]) -> None:
        """Adds or replaces one silence (by id), leaving the others as they are."""

    def acks(self, now: datetime | None = None) -> dict[str, dict[str, str]]:
        """Acknowledged alerts: fingerprint → {"by": who, "at": ISO time}; those older than
        FORGET_AFTER before `now` are dropped."""

    def ack(self, fingerprint: str, who: str, at: datetime) -> None: ...

    def queue_external(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Alerts from Alertmanager received by any instance, for the leader to take in."""

    def queued_external(self) -> list[dict[str, Any]]:
        """What `queue_external` queued and `consume_external` has not consumed, in order."""

    def consume_external(self, count: int, body: Any) -> None:
        """Drops the first `count` queued external alerts and writes the external alerts'
        document `body`, atomically."""

    def log_incidents(self, events: Sequence[Mapping[str, str]]) -> None:
        """Alert transitions, for the status page and its feed: each `{"fingerprint",
        "alertname", "target", "severity", "summary", "status"` (firing or resolved)`,
        "started_at", "at"}` (ISO times). A firing one opens an incident (unless the
        fingerprint has one open), a resolved one closes the fingerprint's open incident at
        `at` (or records a closed one when none is open). Incidents that ended more than
        INCIDENTS_KEEP_FOR before `at` are dropped, and beyond INCIDENTS_KEEP the oldest."""

    def incidents(self, since: datetime) -> list[dict[str, Any]]:
        """Incidents open now or resolved at or after `since`, newest start first: `{"id"}`
        and INCIDENT_KEYS (`resolved_at` None while open)."""


class AlertStore:
    def __init__(self, path: Path) -> None:
        private_database(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:  # before anything touches the file
            sqlite_version(self._conn, f"the alert store {path}", READABLE)
        except BaseException:
            self._conn.close()
            raise
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")  # a raised alert survives power loss
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- alert states ----------------------------------------------------------------------
    def load_states(self) -> dict[StateKey, AlertState]:
        with self._lock:
            rows = self._conn.execute("SELECT rule, target, state FROM alert_states").fetchall()
        return {(r, t): AlertState.from_json(json.loads(s)) for r, t, s in rows}

    def save_states(self, changed: Mapping[StateKey, AlertState]) -> None:
        """Inactive states with nothing to remember are deleted, the rest replaced."""
        with self._tx() as conn:
            for (rule, target), state in changed.items():
                if state.phase == "inactive" and state.streak == 0:
                    conn.execute("DELETE FROM alert_states WHERE rule = ? AND target = ?",
                                 (rule, target))
                else:
                    conn.execute("INSERT OR REPLACE INTO alert_states VALUES (?, ?, ?)",
                                 (rule, target, json.dumps(state.to_json())))

    # --- documents -------------------------------------------------------------------------
    def get(self, name: str) -> Any:
        with self._lock:
            row = self._conn.execute("SELECT body FROM documents WHERE name = ?",
                                     (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, name: str, body: Any) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO documents VALUES (?, ?)",
                         (name, json.dumps(body)))

    # --- outbox ----------------------------------------------------------------------------
    def enqueue(self, items: Sequence[Outgoing], now: datetime,
                documents: Mapping[str, Any] | None = None) -> None:
        """Write notifications and the documents that record them as produced, atomically."""
        with self._tx() as conn:
            for name, body in (documents or {}).items():
                conn.execute("INSERT OR REPLACE INTO documents VALUES (?, ?)",
                             (name, json.dumps(body)))
            conn.executemany(
                "INSERT INTO outbox (receiver, kind, group_key, alerts, text, buttons,"
                " created_at, status, attempts, next_try_at) VALUES (?, ?, ?, ?, ?, ?, ?,"
                " 'pending', 0, ?)",
                [(i.receiver, i.kind, i.group_key, json.dumps([dict(a) for a in i.alerts]),
                  i.text, json.dumps([list(b) for b in i.buttons]), now.isoformat(),
                  now.isoformat()) for i in items])

    def next_pending(self, receiver: str) -> tuple[Queued, datetime] | None:
        """The oldest unsent notification of a receiver (order is kept per receiver) and
        when it may be tried."""
        with self._lock:
            row = self._conn.execute(
                "SELECT id, receiver, kind, text, buttons, attempts, next_try_at, group_key"
                " FROM outbox WHERE status = 'pending' AND receiver = ? ORDER BY id LIMIT 1",
                (receiver,)).fetchone()
            reply = None if row is None or row[2] != "resolved" else self._conn.execute(
                "SELECT chat_id, message_id FROM outbox WHERE receiver = ? AND group_key = ?"
                " AND status = 'sent' AND kind = 'firing' AND id < ? ORDER BY id DESC LIMIT 1",
                (receiver, row[7], row[0])).fetchone()
        if row is None:
            return None
        buttons = tuple((str(a), str(b)) for a, b in json.loads(row[4]))
        reply_to = (str(reply[0]), int(reply[1])) if reply and reply[1] else None
        return (Queued(row[0], row[1], row[2], row[3], buttons, row[5], reply_to),
                datetime.fromisoformat(row[6]))

    def mark_sent(self, item_id: int, chat_id: str, message_id: int, now: datetime) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE outbox SET status = 'sent', sent_at = ?, chat_id = ?,"
                         " message_id = ?, attempts = attempts + 1, error = NULL WHERE id = ?",
                         (now.isoformat(), chat_id, message_id, item_id))

    def mark_retry(self, item_id: int, error: str, next_try_at: datetime) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE outbox SET attempts = attempts + 1, error = ?, next_try_at = ?"
                         " WHERE id = ?", (error, next_try_at.isoformat(), item_id))

    def mark_failed(self, item_id: int, error: str) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE outbox SET status = 'failed', attempts = attempts + 1,"
                         " error = ? WHERE id = ?", (error, item_id))

    def history(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, receiver, kind, group_key, alerts, text, created_at, status,"
                " attempts, sent_at, chat_id, message_id, error FROM outbox"
                " ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        keys = ("id", "receiver", "kind", "group_key", "alerts", "text", "created_at",
                "status", "attempts", "sent_at", "chat_id", "message_id", "error")
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for item in out:
            item["alerts"] = json.loads(item["alerts"])
        return out

    def message_of(self, chat_id: str, message_id: int) -> dict[str, Any] | None:
        """The sent notification behind a Telegram message (for button presses)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT id, text, alerts FROM outbox WHERE chat_id = ? AND message_id = ?",
                (chat_id, message_id)).fetchone()
        return None if row is None else {"id": row[0], "text": row[1],
                                         "alerts": json.loads(row[2])}

    # --- merged documents (one process: a read-modify-write under the lock) ----------------
    def _update(self, name: str, change: Any) -> None:
        with self._tx() as conn:
            row = conn.execute("SELECT body FROM documents WHERE name = ?", (name,)).fetchone()
            body = change(None if row is None else json.loads(row[0]))
            conn.execute("INSERT OR REPLACE INTO documents VALUES (?, ?)",
                         (name, json.dumps(body)))

    def silences(self, now: datetime | None = None) -> list[dict[str, Any]]:
        text = self.get(SILENCES_DOC)  # a JSON text inside the document, as always stored
        items = list(json.loads(text)) if text else []
        return [s for s in items if now is None or not forgotten(s.get("ends_at"), now)]

    def put_silence(self, silence: Mapping[str, Any]) -> None:
        """Also drops the silences that ended more than FORGET_AFTER before this one began."""
        def change(text: str | None) -> str:
            since = silence.get("starts_at")
            now = datetime.fromisoformat(since) if isinstance(since, str) else None
            items = [s for s in (json.loads(text) if text else [])
                     if s["id"] != silence["id"]
                     and (now is None or not forgotten(s.get("ends_at"), now))]
            return json.dumps(sorted([*items, dict(silence)], key=lambda s: str(s["id"])))
        self._update(SILENCES_DOC, change)

    def acks(self, now: datetime | None = None) -> dict[str, dict[str, str]]:
        return {k: v for k, v in dict(self.get(ACKS_DOC) or {}).items()
                if now is None or not forgotten(v.get("at"), now)}

    def ack(self, fingerprint: str, who: str, at: datetime) -> None:
        """Also drops the acknowledgements older than FORGET_AFTER."""
        def change(body: Any) -> Any:
            kept = {k: v for k, v in (body or {}).items() if not forgotten(v.get("at"), at)}
            return {**kept, fingerprint: {"by": who, "at": at.isoformat()}}
        self._update(ACKS_DOC, change)

    def queue_external(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        self._update(EXTERNAL_QUEUE_DOC, lambda body: [*(body or []), *map(dict, alerts)])

    def queued_external(self) -> list[dict[str, Any]]:
        return list(self.get(EXTERNAL_QUEUE_DOC) or [])

    def consume_external(self, count: int, body: Any) -> None:
        with self._tx() as conn:
            row = conn.execute("SELECT body FROM documents WHERE name = ?",
                               (EXTERNAL_QUEUE_DOC,)).fetchone()
            queue = json.loads(row[0])[count:] if row is not None else []
            conn.executemany("INSERT OR REPLACE INTO documents VALUES (?, ?)",
                             [(EXTERNAL_QUEUE_DOC, json.dumps(queue)),
                              (EXTERNAL_DOC, json.dumps(body))])

    # --- the incident log ------------------------------------------------------------------
    def log_incidents(self, events: Sequence[Mapping[str, str]]) -> None:
        with self._tx() as conn:
            for e in events:
                row = conn.execute("SELECT id FROM incidents WHERE fingerprint = ? AND"
                                   " resolved_at IS NULL ORDER BY id DESC LIMIT 1",
                                   (e["fingerprint"],)).fetchone()
                if e["status"] == "firing" and row is not None:
                    continue
                if e["status"] != "firing" and row is not None:
                    conn.execute("UPDATE incidents SET resolved_at = ? WHERE id = ?",
                                 (e["at"], row[0]))
                    continue
                conn.execute(
                    "INSERT INTO incidents (fingerprint, alertname, target, severity, summary,"
                    " started_at, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (e["fingerprint"], e["alertname"], e["target"], e["severity"],
                     e["summary"], e["started_at"] or e["at"],
                     None if e["status"] == "firing" else e["at"]))
            if events:
                cutoff = datetime.fromisoformat(events[-1]["at"]) - INCIDENTS_KEEP_FOR
                conn.execute("DELETE FROM incidents WHERE resolved_at < ?",
                             (cutoff.isoformat(),))
                conn.execute("DELETE FROM incidents WHERE id <= (SELECT MAX(id) FROM"
                             " incidents) - ?", (INCIDENTS_KEEP,))

    def incidents(self, since: datetime) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, fingerprint, alertname, target, severity, summary, started_at,"
                " resolved_at FROM incidents WHERE resolved_at IS NULL OR resolved_at >= ?"
                " ORDER BY started_at DESC, id DESC", (since.isoformat(),)).fetchall()
        return [{"id": str(r[0]), **dict(zip(INCIDENT_KEYS, r[1:], strict=True))}
                for r in rows]


def forgotten(when: Any, now: datetime) -> bool:
    """Whether the ISO time `when` lies more than FORGET_AFTER before `now` (what the stores
    drop: silences that ended, acknowledgements made that long ago)."""
    try:
        return datetime.fromisoformat(str(when)) < now - FORGET_AFTER
    except (ValueError, TypeError):
        return False
