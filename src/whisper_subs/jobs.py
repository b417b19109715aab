"""The durable job store: SQLite in WAL mode, and the one module that holds SQL.

A job moves ``queued -> running -> done | failed | cancelled``. A worker ``claim``s the queued job
with the highest priority (then the oldest), holds it under a lease that it extends with
``heartbeat``, saves each chunk's result as it finishes (``save_chunk``) and ends with ``finish``
or ``fail``. A worker that dies leaves its job ``running`` with a lease that runs out; ``sweep``
puts such jobs back in the queue with their chunk results kept, so the next worker resumes.

Concurrency:

* Threads: one connection per store, opened with ``check_same_thread=False`` and guarded by one
  lock, so a ``JobStore`` may be shared by the threads of one process (the API's thread pool and
  the runner). Every call is short; the lock costs less than a connection per thread that would
  have to be found and closed again.
* Processes: every write is one ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock
  before it reads, so two processes that ``claim`` at once never get the same job. WAL lets
  readers go on while a write is in progress; ``busy_timeout`` makes a writer wait for the lock
  instead of failing at once.

Priority: a higher number is claimed first; jobs of equal priority go oldest first.
Times are unix seconds from the injected ``clock``, so tests can move time.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

from whisper_subs.errors import (
    InvalidTransitionError,
    JobNotFoundError,
    UsageError,
    WhisperSubsError,
)

logger = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_MS = 5000


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for a status no job ever leaves (done, failed, cancelled)."""
        return not TRANSITIONS[self]


# Where each status may go. running -> queued is the requeue of a job whose worker died
# (``sweep``) or restarted (``requeue_running_of``); finished jobs never move again.
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}
    ),
    JobStatus.DONE: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(job_id: str, current: JobStatus, target: JobStatus) -> None:
    """Raise InvalidTransitionError unless a job may go from ``current`` to ``target``."""
    if can_transition(current, target):
        return
    allowed = sorted(s.value for s in TRANSITIONS[current])
    hint = (
        f"it can only go to {', '.join(allowed)}"
        if allowed
        else f"{current.value} is final; create a new job instead"
    )
    raise InvalidTransitionError(
        f"job {job_id} cannot go from {current.value} to {target.value}: {hint}"
    )


@dataclass(frozen=True, slots=True)
class Job:
    """One row of the store, as read at one moment; ask the store again for fresh state.

    ``options`` and ``outputs`` are fresh dicts on every read: changing them changes nothing
    stored.
    """

    id: str  # 32 hex characters (uuid4), URL-safe
    status: JobStatus
    priority: int  # higher is claimed first
    created_at: float  # unix seconds
    started_at: float | None  # set by each claim, cleared by a requeue
    finished_at: float | None  # set on done, failed or cancelled
    input: str  # a local path or a URL
    input_name: str  # the name the user gave the file, for output names and display
    options: dict[str, Any]  # transcription options, stored as JSON
    progress: float  # 0..1: chunks_done / chunks_total, 1 once done
    duration: float | None  # audio seconds, known once the job is planned
    error: str | None  # why it failed
    chunks_total: int | None  # known once the job is planned
    chunks_done: int  # chunk results saved so far
    lease_owner: str | None  # the worker holding a running job
    lease_expires_at: float | None  # unix seconds; the job is swept after this
    outputs: dict[str, str]  # format -> path, once done
    input_deleted: bool = False  # retention removed the input; outputs are kept
    attempts: int = 0  # times claimed; more than one means a worker died or restarted on it


_JOB_COLUMNS = (
    "id, status, priority, created_at, started_at, finished_at, input, input_name, options, "
    "progress, duration, error, chunks_total, chunks_done, lease_owner, lease_expires_at, "
    "outputs, input_deleted, attempts"
)

# Each migration takes the schema from version i to i + 1. Statements are run one by one inside
# the caller's transaction (``executescript`` would commit on its own).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL
                CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            priority INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            input TEXT NOT NULL,
            input_name TEXT NOT NULL,
            options TEXT NOT NULL DEFAULT '{}',
            progress REAL NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
            duration REAL,
            error TEXT,
            chunks_total INTEGER CHECK (chunks_total >= 0),
            chunks_done INTEGER NOT NULL DEFAULT 0,
            lease_owner TEXT,
            lease_expires_at REAL,
            outputs TEXT NOT NULL DEFAULT '{}',
            input_deleted INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX jobs_claim ON jobs (status, priority DESC, created_at, seq)",
        "CREATE INDEX jobs_created ON jobs (created_at, seq)",
        "CREATE INDEX jobs_finished ON jobs (finished_at) WHERE input_deleted = 0",
        """
        CREATE TABLE chunk_results (
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            chunk_index INTEGER NOT NULL CHECK (chunk_index >= 0),
            payload TEXT NOT NULL,
            saved_at REAL NOT NULL,
            PRIMARY KEY (job_id, chunk_index)
        ) WITHOUT ROWID
        """,
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)  # stored in PRAGMA user_version


def _new_id() -> str:
    return uuid.uuid4().hex


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        status=JobStatus(row["status"]),
        priority=row["priority"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        input=row["input"],
        input_name=row["input_name"],
        options=json.loads(row["options"]),
        progress=row["progress"],
        duration=row["duration"],
        error=row["error"],
        chunks_total=row["chunks_total"],
        chunks_done=row["chunks_done"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        outputs=json.loads(row["outputs"]),
        input_deleted=bool(row["input_deleted"]),
        attempts=row["attempts"],
    )


def _to_json(value: Mapping[str, Any], what: str) -> str:
    try:
        return json.dumps(dict(value), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"job {what} must be JSON-serializable, got {value!r}: {exc}") from exc


def _check_lease(lease_s: float) -> None:
    if not lease_s > 0:
        raise ValueError(f"lease_s must be > 0 seconds, got {lease_s!r}")


class JobStore:
    """Jobs and their per-chunk results in one SQLite file. See the module doc for concurrency.

    ``path`` may be ``":memory:"`` for a throwaway store (no WAL, one process only).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> None:
        self.path = str(path)
        self._clock = clock
        self._lock = threading.RLock()
        memory = self.path == ":memory:"
        try:
            if not memory:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
                check_same_thread=False,  # shared between threads under self._lock
            )
        except (OSError, sqlite3.Error) as exc:
            raise WhisperSubsError(
                f"cannot open the job store at {self.path}: {exc}; "
                "check that the folder exists and is writable"
            ) from exc
        conn.row_factory = sqlite3.Row
        self._conn: sqlite3.Connection | None = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            conn.execute("PRAGMA foreign_keys = ON")
            if not memory:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise WhisperSubsError(
                        f"the job store at {self.path} cannot use WAL mode (got {mode!r}); "
                        "put it on a local disk, not a network share"
                    )
                # NORMAL is safe from corruption in WAL mode; a power cut may lose the last
                # commits, which costs at most a chunk or a requeue.
                conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            self._conn = None
            raise WhisperSubsError(
                f"cannot open the job store at {self.path}: {exc}; "
                "is it an SQLite file written by whisper-subs?"
            ) from exc
        except BaseException:
            conn.close()
            self._conn = None
            raise

    # --- plumbing -------------------------------------------------------------------------

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # another process may be migrating the same file
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise WhisperSubsError(
                    f"the job store at {self.path} has schema version {version}, newer than "
                    f"this whisper-subs knows ({SCHEMA_VERSION}); upgrade whisper-subs or use "
                    "another file"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target - 1]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")
                logger.info("job store %s migrated to schema version %d", self.path, target)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise WhisperSubsError(f"the job store at {self.path} is closed")
        return self._conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._connection()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that holds SQLite's write lock from its first statement."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    def _fetch(conn: sqlite3.Connection, job_id: str) -> Job:
        row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no job has the id {job_id!r}; list jobs to see their ids")
        return _row_to_job(row)

    def _move(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        target: JobStatus,
        assignments: str,
        params: tuple[Any, ...],
        owner: str | None = None,
    ) -> Job:
        """Check and apply one transition inside a write transaction; return the new row."""
        job = self._fetch(conn, job_id)
        check_transition(job_id, job.status, target)
        if owner is not None and job.lease_owner != owner:
            raise InvalidTransitionError(
                f"job {job_id} is held by {job.lease_owner!r}, not {owner!r}: the lease was "
                "lost (the job was requeued or claimed again); drop this attempt"
            )
        conn.execute(
            f"UPDATE jobs SET status = ?, {assignments} WHERE id = ?",
            (target.value, *params, job_id),
        )
        return self._fetch(conn, job_id)

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> JobStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- jobs -----------------------------------------------------------------------------

    def create(
        self,
        input: str,
        input_name: str,
        options: Mapping[str, Any] | None = None,
        priority: int = 0,
    ) -> Job:
        """Queue a new job and return it."""
        options_json = _to_json(options or {}, "options")
        job_id = _new_id()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO jobs (id, status, priority, created_at, input, input_name, options) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    JobStatus.QUEUED.value,
                    int(priority),
                    self._clock(),
                    input,
                    input_name,
                    options_json,
                ),
            )
            job = self._fetch(conn, job_id)
        logger.info("job %s queued: %s (priority %d)", job_id, input_name, job.priority)
        return job

    def get(self, job_id: str) -> Job:
        """The job with this id; JobNotFoundError if there is none."""
        with self._read() as conn:
            return self._fetch(conn, job_id)

    def list(self, status: JobStatus | None = None, limit: int = 100) -> list[Job]:
        """Up to ``limit`` jobs, newest first, of one status or all."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        where, params = ("", ()) if status is None else ("WHERE status = ?", (status.value,))
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs {where} "
                "ORDER BY created_at DESC, seq DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [_row_to_job(row) for row in rows]

    def claim(self, owner: str, lease_s: float) -> Job | None:
        """Take the next queued job (highest priority, then oldest) for ``owner``, or None.

        Safe across processes: the read and the update are one BEGIN IMMEDIATE transaction.
        """
        _check_lease(lease_s)
        with self._write() as conn:
            row = conn.execute(
                "SELECT id FROM jobs WHERE status = ? "
                "ORDER BY priority DESC, created_at ASC, seq ASC LIMIT 1",
                (JobStatus.QUEUED.value,),
            ).fetchone()
            if row is None:
                return None
            now = self._clock()
            job = self._move(
                conn,
                row["id"],
                JobStatus.RUNNING,
                "started_at = ?, lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1",
                (now, owner, now + lease_s),
            )
        logger.info("job %s claimed by %s (attempt %d)", job.id, owner, job.attempts)
        return job

    def heartbeat(self, job_id: str, owner: str, lease_s: float) -> bool:
        """Extend ``owner``'s lease on a running job to now + ``lease_s``.

        False when the lease is lost: the job was requeued, claimed by another worker,
        cancelled or finished. The worker should then stop working on it.
        """
        _check_lease(lease_s)
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET lease_expires_at = ? "
                "WHERE id = ? AND status = ? AND lease_owner = ?",
                (self._clock() + lease_s, job_id, JobStatus.RUNNING.value, owner),
            )
            if cursor.rowcount == 1:
                return True
            self._fetch(conn, job_id)  # JobNotFoundError for an unknown id
        logger.info("job %s: %s lost its lease", job_id, owner)
        return False

    def set_plan(self, job_id: str, duration: float, chunks_total: int) -> Job:
        """Record the audio length and chunk count once the job is planned.

        Called again on resume with the same plan, it keeps the saved chunk results. A
        different ``chunks_total`` means a different plan: the old results are dropped.
        """
        if chunks_total < 0:
            raise ValueError(f"chunks_total must be >= 0, got {chunks_total!r}")
        with self._write() as conn:
            job = self._fetch(conn, job_id)
            if job.chunks_total is not None and job.chunks_total != chunks_total:
                logger.warning(
                    "job %s re-planned from %d to %d chunks; dropping %d saved chunk results",
                    job_id,
                    job.chunks_total,
                    chunks_total,
                    job.chunks_done,
                )
                conn.execute("DELETE FROM chunk_results WHERE job_id = ?", (job_id,))
            conn.execute(
                "UPDATE jobs SET duration = ?, chunks_total = ? WHERE id = ?",
                (float(duration), chunks_total, job_id),
            )
            self._update_progress(conn, job_id)
            return self._fetch(conn, job_id)

    def save_chunk(self, job_id: str, chunk_index: int, payload: str) -> bool:
        """Store one chunk's result (saving an index again replaces it) and update progress.

        Returns False, storing nothing, when the job is already done, failed or cancelled.
        """
        if chunk_index < 0:
            raise ValueError(f"chunk_index must be >= 0, got {chunk_index!r}")
        with self._write() as conn:
            job = self._fetch(conn, job_id)
            if job.status.is_terminal:
                logger.debug("job %s is %s; chunk %d not saved", job_id, job.status, chunk_index)
                return False
            if job.chunks_total is not None and chunk_index >= job.chunks_total:
                raise ValueError(
                    f"job {job_id} has {job.chunks_total} chunks; chunk_index {chunk_index} "
                    "is out of range"
                )
            conn.execute(
                "INSERT INTO chunk_results (job_id, chunk_index, payload, saved_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (job_id, chunk_index) "
                "DO UPDATE SET payload = excluded.payload, saved_at = excluded.saved_at",
                (job_id, chunk_index, payload, self._clock()),
            )
            self._update_progress(conn, job_id)
        return True

    @staticmethod
    def _update_progress(conn: sqlite3.Connection, job_id: str) -> None:
        conn.execute(
            "UPDATE jobs SET "
            "chunks_done = (SELECT count(*) FROM chunk_results WHERE job_id = jobs.id), "
            "progress = CASE WHEN chunks_total > 0 THEN min(1.0, "
            "  (SELECT count(*) FROM chunk_results WHERE job_id = jobs.id) * 1.0 / chunks_total)"
            " ELSE 0.0 END "
            "WHERE id = ?",
            (job_id,),
        )

    def chunk_results(self, job_id: str) -> dict[int, str]:
        """The saved chunk results of a job, by chunk index."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT chunk_index, payload FROM chunk_results WHERE job_id = ? "
                "ORDER BY chunk_index",
                (job_id,),
            ).fetchall()
            if not rows:
                self._fetch(conn, job_id)  # JobNotFoundError for an unknown id
        return {row["chunk_index"]: row["payload"] for row in rows}

    def finish(self, job_id: str, outputs: Mapping[str, str], *, owner: str | None = None) -> Job:
        """running -> done with ``outputs`` (format -> path). With ``owner``, only its holder."""
        outputs_json = _to_json(outputs, "outputs")
        with self._write() as conn:
            job = self._move(
                conn,
                job_id,
                JobStatus.DONE,
                "finished_at = ?, progress = 1.0, outputs = ?, error = NULL, "
                "lease_owner = NULL, lease_expires_at = NULL",
                (self._clock(), outputs_json),
                owner,
            )
        logger.info("job %s done: %s", job_id, ", ".join(sorted(job.outputs)))
        return job

    def fail(self, job_id: str, error: str, *, owner: str | None = None) -> Job:
        """running -> failed with ``error``. With ``owner``, only its holder may fail it."""
        with self._write() as conn:
            job = self._move(
                conn,
                job_id,
                JobStatus.FAILED,
                "finished_at = ?, error = ?, lease_owner = NULL, lease_expires_at = NULL",
                (self._clock(), error),
                owner,
            )
        logger.info("job %s failed: %s", job_id, error)
        return job

    def cancel(self, job_id: str) -> Job:
        """queued or running -> cancelled. A finished job raises InvalidTransitionError.

        A running job's worker finds out through ``heartbeat`` (False) or ``is_cancelled``.
        """
        with self._write() as conn:
            job = self._move(
                conn,
                job_id,
                JobStatus.CANCELLED,
                "finished_at = ?, lease_owner = NULL, lease_expires_at = NULL",
                (self._clock(),),
            )
        logger.info("job %s cancelled", job_id)
        return job

    def is_cancelled(self, job_id: str) -> bool:
        with self._read() as conn:
            row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no job has the id {job_id!r}; list jobs to see their ids")
        return bool(row["status"] == JobStatus.CANCELLED.value)

    def _requeue(self, conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> list[str]:
        ids = [
            row["id"]
            for row in conn.execute(
                f"SELECT id FROM jobs WHERE status = ? AND {where} ORDER BY seq",
                (JobStatus.RUNNING.value, *params),
            ).fetchall()
        ]
        for job_id in ids:  # chunk results are kept: the next claim resumes
            self._move(
                conn,
                job_id,
                JobStatus.QUEUED,
                "started_at = NULL, lease_owner = NULL, lease_expires_at = NULL",
                (),
            )
        return ids

    def sweep(self, now: float | None = None) -> list[str]:
        """Requeue running jobs whose lease ran out (``lease_expires_at <= now``); their ids."""
        when = self._clock() if now is None else now
        with self._write() as conn:
            ids = self._requeue(conn, "coalesce(lease_expires_at, 0) <= ?", (when,))
        if ids:
            logger.warning("requeued %d job(s) with expired leases: %s", len(ids), ", ".join(ids))
        return ids

    def requeue_running_of(self, owner: str) -> list[str]:
        """Requeue every running job held by ``owner`` (a worker restarting under the same
        name, or shutting down); their ids."""
        with self._write() as conn:
            ids = self._requeue(conn, "lease_owner = ?", (owner,))
        if ids:
            logger.info("requeued %d job(s) of %s: %s", len(ids), owner, ", ".join(ids))
        return ids

    def counts(self) -> dict[JobStatus, int]:
        """How many jobs have each status (every status present, 0 where none)."""
        with self._read() as conn:
            rows = conn.execute("SELECT status, count(*) AS n FROM jobs GROUP BY status").fetchall()
        counts = dict.fromkeys(JobStatus, 0)
        counts.update({JobStatus(row["status"]): row["n"] for row in rows})
        return counts

    # --- retention ------------------------------------------------------------------------

    def finished_before(self, ts: float, limit: int = 1000) -> list[Job]:
        """Finished jobs (done, failed, cancelled) that ended before ``ts`` and whose input
        has not been deleted yet, oldest first: the inputs retention may delete now."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs "
                "WHERE input_deleted = 0 AND finished_at IS NOT NULL AND finished_at < ? "
                "AND status IN (?, ?, ?) ORDER BY finished_at, seq LIMIT ?",
                (
                    ts,
                    JobStatus.DONE.value,
                    JobStatus.FAILED.value,
                    JobStatus.CANCELLED.value,
                    limit,
                ),
            ).fetchall()
        return [_row_to_job(row) for row in rows]

    def mark_input_deleted(self, job_id: str) -> Job:
        """Record that retention deleted this job's input (outputs are kept)."""
        with self._write() as conn:
            job = self._fetch(conn, job_id)
            if not job.status.is_terminal:
                raise InvalidTransitionError(
                    f"job {job_id} is {job.status.value}: only a finished job's input may be "
                    "deleted"
                )
            conn.execute("UPDATE jobs SET input_deleted = 1 WHERE id = ?", (job_id,))
            return self._fetch(conn, job_id)
