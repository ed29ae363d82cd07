"""What `tunesmith serve --collect DIR` records: every answered request (input, answer, scores, model version,
time, the id returned to the client) and the feedback clients send for it, in one SQLite file.

SQLite: one file, atomic commits, no server, readable by any tool. The file is bounded: past `max_rows`
requests the oldest tenth (and their feedback) are dropped. A file of that name that tunesmith did not create
is never written to. Inputs are stored as sent: whoever reads DIR reads your users' texts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from ..errors import TunesmithError

FILE = "collect.sqlite3"
MARK = "tunesmith-collect-1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, time REAL NOT NULL, model TEXT NOT NULL,
    version INTEGER NOT NULL, kind TEXT NOT NULL, input TEXT NOT NULL, answer TEXT NOT NULL, scores TEXT);
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
    time REAL NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS requests_model ON requests(model, seq);
CREATE INDEX IF NOT EXISTS feedback_model ON feedback(model, seq);
"""


class Store:
    """The collected requests and feedback. Thread-safe (one connection, one lock): the server writes from its
    worker threads; `tunesmith monitor` and `update --from-feedback` read the same file from other processes."""

    def __init__(self, folder: str | Path, max_rows: int = 1_000_000, readonly: bool = False):
        self.path, self.max_rows = Path(folder) / FILE, max_rows
        if readonly and not self.path.is_file():
            raise TunesmithError(f"{folder} holds no collected requests ({FILE}); serve with --collect {folder}.")
        if not readonly:
            Path(folder).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        try:
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30, isolation_level=None)
            self._check_ours(readonly)
        except sqlite3.DatabaseError as err:
            raise TunesmithError(f"{self.path} is not a tunesmith collection ({err}); choose another folder.") from None

    def _check_ours(self, readonly: bool) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and ("meta" not in tables or self._mark() != MARK):
            raise TunesmithError(f"{self.path} was not written by tunesmith serve --collect; it is left as it is.")
        if not readonly:
            self._db.execute("PRAGMA journal_mode=WAL")  # readers (monitor, update) never block the server
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (MARK,))

    def _mark(self) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
        return row[0] if row else None

    def record(
        self, model: str, version: int, kind: str, items: list[tuple], ids: list[str] | None = None
    ) -> list[str]:
        """One row per answered input: items are (input, answer, scores). Returns their ids, in order (new
        ones unless given: a chat completion keeps the id its response carries)."""
        now, ids = time.time(), ids or [uuid.uuid4().hex for _ in items]
        rows = [
            (ident, now, model, version, kind, _dump(given), _dump(answer), _dump(scores))
            for ident, (given, answer, scores) in zip(ids, items)
        ]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO requests (id, time, model, version, kind, input, answer, scores) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    rows,
                )
                self._rotate()
            except BaseException:
                self._db.execute("ROLLBACK")  # the next request must not find a transaction left open
                raise
            self._db.execute("COMMIT")
        return ids

    def _rotate(self) -> None:
        # rows leave only from the oldest end, so seq is contiguous: its span is the count, read from the
        # primary key's ends (COUNT(*) would scan every row on every request)
        first, last = self._db.execute("SELECT MIN(seq), MAX(seq) FROM requests").fetchone()
        if first is not None and last - first + 1 > self.max_rows:
            drop = max(1, self.max_rows // 10)
            self._db.execute(
                "DELETE FROM requests WHERE seq IN (SELECT seq FROM requests ORDER BY seq LIMIT ?)", (drop,)
            )

    def request(self, ident: str) -> dict | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, time, model, version, kind, input, answer, scores FROM requests WHERE id=?", (ident,)
            ).fetchone()
        return _request(row) if row else None

    def add_feedback(self, ident: str, model: str, kind: str, value) -> None:
        """The client's correction for a request; a second one for the same request replaces the first."""
        with self._lock:
            self._db.execute(
                "INSERT INTO feedback (id, time, model, kind, value) VALUES (?,?,?,?,?) ON CONFLICT(id) DO UPDATE "
                "SET time=excluded.time, kind=excluded.kind, value=excluded.value",
                (ident, time.time(), model, kind, _dump(value)),
            )

    def feedback(self, model: str, after: int = 0) -> list[dict]:
        """Feedback for `model` with its request, in the order it came (seq > after: what a later update has
        not used yet)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT f.seq, f.kind, f.value, r.input, r.answer, r.version FROM feedback f JOIN requests r "
                "ON r.id = f.id WHERE f.model=? AND f.seq>? ORDER BY f.seq",
                (model, after),
            ).fetchall()
        return [
            {
                "seq": s,
                "kind": k,
                "value": json.loads(v),
                "input": json.loads(i),
                "answer": json.loads(a),
                "version": ver,
            }
            for s, k, v, i, a, ver in rows
        ]

    def requests(self, model: str | None = None, since: float = 0.0) -> list[dict]:
        query = "SELECT id, time, model, version, kind, input, answer, scores FROM requests WHERE time>=?"
        params: tuple = (since,)
        if model:
            query, params = query + " AND model=?", (since, model)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", params).fetchall()
        return [_request(r) for r in rows]

    def summary(self, recent: int = 10_000) -> list[dict]:
        """Per model and version: requests, the top-label shares and mean confidence (over its last `recent`
        answers), feedback received and how much of it agreed with the answer given."""
        with self._lock:
            groups = self._db.execute(
                "SELECT model, version, COUNT(*), MIN(time), MAX(time) FROM requests GROUP BY model, version "
                "ORDER BY model, version"
            ).fetchall()
            out = []
            for model, version, count, first, last in groups:
                rows = self._db.execute(
                    "SELECT r.answer, r.scores, f.kind, f.value FROM requests r LEFT JOIN feedback f ON f.id = r.id "
                    "WHERE r.model=? AND r.version=? ORDER BY r.seq DESC LIMIT ?",
                    (model, version, recent),
                ).fetchall()
                out.append(
                    {
                        "model": model,
                        "version": version,
                        "requests": count,
                        "first": first,
                        "last": last,
                        **_signals(rows),
                    }
                )
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _request(row) -> dict:
    ident, when, model, version, kind, given, answer, scores = row
    return {
        "id": ident,
        "time": when,
        "model": model,
        "version": version,
        "kind": kind,
        "input": json.loads(given),
        "answer": json.loads(answer),
        "scores": json.loads(scores) if scores else None,
    }


def agrees(kind: str, value, answer) -> bool | None:
    """Whether a correction says the answer given was right: the same label, the same label set, the same entities
    (type and offsets). None where an exact match means nothing (a regression value, a generated answer, a rating)."""
    if not isinstance(answer, dict):
        return None
    if kind == "label" and "label" in answer:
        return answer["label"] == value
    if kind == "labels" and isinstance(answer.get("labels"), list) and isinstance(value, list):
        return set(answer["labels"]) == set(value)
    if kind == "entities" and isinstance(answer.get("entities"), list) and isinstance(value, list):
        given = {(e.get("start"), e.get("end"), e.get("type")) for e in answer["entities"] if isinstance(e, dict)}
        return given == {(e.get("start"), e.get("end"), e.get("label")) for e in value if isinstance(e, dict)}
    return None


def _dump(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def _signals(rows: list) -> dict:
    labels, confidence, feedback, agreed, compared, far = {}, [], 0, 0, 0, []
    for answer, scores, kind, value in rows:
        answer = json.loads(answer)
        label = answer.get("label") if isinstance(answer, dict) else None
        if isinstance(answer, dict) and isinstance(answer.get("far_from_training"), bool):
            far.append(answer["far_from_training"])
        if label is not None:
            labels[label] = labels.get(label, 0) + 1
        probs = json.loads(scores) if scores else None
        if isinstance(probs, dict) and probs and all(isinstance(v, (int, float)) for v in probs.values()):
            confidence.append(max(probs.values()))
        if kind is not None:
            feedback += 1
            same = agrees(kind, json.loads(value), answer)
            compared += same is not None
            agreed += bool(same)
    total = sum(labels.values())
    return {
        "label_shares": {k: v / total for k, v in sorted(labels.items())} if total else {},
        "mean_confidence": sum(confidence) / len(confidence) if confidence else None,
        "feedback": feedback,
        "feedback_agreement": agreed / compared if compared else None,
        "far_from_training": sum(far) / len(far) if far else None,
    }
