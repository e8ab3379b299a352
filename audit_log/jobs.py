"""Scheduled and background work of the audit trail: signed checkpoints.

Checkpoints are made three ways, all "if grown" and so idempotent across processes (the check
is repeated under the audit writer lock, so two replicas never sign the same size twice):

- the scheduler's periodic `checkpoint_job` (a backstop; the retention scheduler calls it);
- the `Checkpointer` of every `lethe serve` and `lethe worker`: once at startup, then within
  `freshness` seconds after any transaction of its engine that appended to the log commits;
- on the spot, by `GET /v1/audit/checkpoint`, when the log has entries but no checkpoint yet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from audit_log import service
from audit_log.checkpoints import latest, make_checkpoint
from audit_log.models import AuditCheckpoint, AuditEntry
from audit_log.signing import NoteSigner
from records.db import new_session, unit_of_work, utc_now

log = structlog.get_logger(__name__)

_GREW = "lethe_audit_grew"
_TABLE_NAME = str(AuditEntry.__tablename__)


def checkpoint_job(engine: Engine, signer: NoteSigner, now: datetime) -> int:
    """Sign a checkpoint of the log in its own transaction if it grew; returns the tree size."""
    with unit_of_work(engine) as session:
        checkpoint = make_checkpoint(session, signer=signer, now=now)
        size = checkpoint.size
    log.info("audit.checkpoint", size=size)
    return size


def checkpoint_if_grown(
    engine: Engine, signer: NoteSigner, now: datetime
) -> AuditCheckpoint | None:
    """Sign a checkpoint when the log has entries that no checkpoint covers yet.

    Returns the checkpoint covering the whole log (new or not), or None for an empty log. The
    first look is a plain read, so a log that has not grown costs no writer lock.
    """
    with new_session(engine) as session:
        size = service.size(session)
        previous = latest(session)
    if size == 0:
        return None
    if previous is not None and previous.size >= size:
        return previous
    with unit_of_work(engine) as session:
        checkpoint = make_checkpoint(session, signer=signer, now=now)
    if previous is None or checkpoint.size != previous.size:
        log.info("audit.checkpoint", size=checkpoint.size)
    return checkpoint


class Checkpointer:
    """Keeps the signed checkpoint fresh: within `freshness` seconds of a commit that appended
    to the log, a checkpoint covers it (DESIGN §7; an auditor should not wait for the next
    periodic job to see today's entries signed).

    Writes are seen through the engine (any connection that inserted into `audit_entry` and
    commits), so HTTP requests, jobs and anything else sharing the engine wake it. Bursts are
    coalesced: one checkpoint per `freshness` window at most, however many commits.
    """

    def __init__(
        self,
        engine: Engine,
        signer: NoteSigner,
        *,
        freshness: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.freshness = freshness
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watching = False

    # --- seeing writes -------------------------------------------------------------------------

    def watch(self) -> None:
        """Listen on the engine for commits that appended to the log."""
        if self._watching:
            return
        self._watching = True
        event.listen(self.engine, "after_cursor_execute", self._after_execute)
        event.listen(self.engine, "commit", self._on_commit)
        event.listen(self.engine, "rollback", self._on_rollback)

    def unwatch(self) -> None:
        if not self._watching:
            return
        self._watching = False
        event.remove(self.engine, "after_cursor_execute", self._after_execute)
        event.remove(self.engine, "commit", self._on_commit)
        event.remove(self.engine, "rollback", self._on_rollback)

    def _after_execute(
        self,
        conn: Connection,
        _cursor: Any,
        statement: str,
        _parameters: Any,
        context: Any,
        _executemany: bool,
    ) -> None:
        if getattr(context, "isinsert", False) and _TABLE_NAME in statement[:40]:
            conn.info[_GREW] = True

    def _on_commit(self, conn: Connection) -> None:
        if conn.info.pop(_GREW, False):
            self.notify()

    def _on_rollback(self, conn: Connection) -> None:
        conn.info.pop(_GREW, None)

    @property
    def pending(self) -> bool:
        """A commit appended to the log and no checkpoint attempt has followed yet."""
        return self._wake.is_set()

    def notify(self) -> None:
        """The log grew (or may have): make a checkpoint within `freshness` seconds."""
        self._wake.set()

    # --- the background thread ------------------------------------------------------------------

    def run_once(self) -> AuditCheckpoint | None:
        """One "checkpoint if grown"; a busy database or any other failure is logged, not raised
        (the next write or the periodic job tries again)."""
        try:
            return checkpoint_if_grown(self.engine, self.signer, self.clock())
        except Exception as exc:
            log.warning("audit.checkpoint.failed", error_type=type(exc).__name__)
            return None

    def start(self) -> None:
        """Checkpoint what grew while no process was running, then follow the writes."""
        self.watch()
        self.run_once()
        if self.freshness <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="lethe-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self.unwatch()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            # Coalesce the burst: everything committed in the window goes into one checkpoint.
            if self._stop.wait(self.freshness):
                return
            self._wake.clear()
            if self.run_once() is None and self._needs_retry():
                self._wake.set()

    def _needs_retry(self) -> bool:
        """After a failed attempt: is the log still ahead of its latest checkpoint?"""
        try:
            with new_session(self.engine) as session:
                size = service.size(session)
                previous = latest(session)
        except Exception:
            return True
        return size > 0 and (previous is None or previous.size < size)
