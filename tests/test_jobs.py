"""The job store on a real SQLite file: lifecycle, claims across processes, resume, retention."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whisper_subs.errors import (
    InvalidTransitionError,
    JobNotFoundError,
    UsageError,
    WhisperSubsError,
)
from whisper_subs.jobs import (
    SCHEMA_VERSION,
    TRANSITIONS,
    Job,
    JobStatus,
    JobStore,
    can_transition,
    check_transition,
)

pytestmark = pytest.mark.timeout(60)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


@pytest.fixture
def store(db_path: Path, clock: FakeClock):
    with JobStore(db_path, clock=clock) as s:
        yield s


def _running(store: JobStore, clock: FakeClock, owner: str = "w1", lease_s: float = 30) -> Job:
    store.create("/in/a.wav", "a.wav")
    job = store.claim(owner, lease_s)
    assert job is not None
    return job


# --- opening ------------------------------------------------------------------------------


def test_open_sets_wal_schema_version_and_pragmas(db_path: Path, store: JobStore) -> None:
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()
    with store._read() as conn:
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_reopen_keeps_jobs_and_does_not_migrate_again(db_path: Path, clock: FakeClock) -> None:
    with JobStore(db_path, clock=clock) as first:
        job = first.create("/in/a.wav", "a.wav", {"language": "en"})
    with JobStore(db_path, clock=clock) as second:
        assert second.get(job.id) == job


def test_newer_schema_is_refused(db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(WhisperSubsError, match="newer than"):
        JobStore(db_path)


def test_a_file_that_is_not_sqlite_is_refused(db_path: Path) -> None:
    db_path.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(WhisperSubsError, match="cannot open the job store"):
        JobStore(db_path)


def test_creates_missing_parent_folders(tmp_path: Path) -> None:
    with JobStore(tmp_path / "a" / "b" / "jobs.db") as s:
        assert s.list() == []


def test_closed_store_raises(db_path: Path) -> None:
    s = JobStore(db_path)
    s.close()
    s.close()  # twice is fine
    with pytest.raises(WhisperSubsError, match="closed"):
        s.list()


# --- create, get, list --------------------------------------------------------------------


def test_create_and_get(store: JobStore, clock: FakeClock) -> None:
    job = store.create("/in/talk.mp4", "talk.mp4", {"language": "de", "beam": 5}, priority=3)
    assert job.status is JobStatus.QUEUED
    assert len(job.id) == 32 and job.id.isalnum()
    assert job.priority == 3
    assert job.created_at == clock.now
    assert job.started_at is None and job.finished_at is None
    assert job.input == "/in/talk.mp4" and job.input_name == "talk.mp4"
    assert job.options == {"language": "de", "beam": 5}
    assert job.progress == 0.0 and job.chunks_done == 0
    assert job.duration is None and job.chunks_total is None and job.error is None
    assert job.lease_owner is None and job.lease_expires_at is None
    assert job.outputs == {} and job.input_deleted is False and job.attempts == 0
    assert store.get(job.id) == job


def test_returned_dicts_are_copies(store: JobStore) -> None:
    job = store.create("/in/a.wav", "a.wav", {"language": "en"})
    job.options["language"] = "fr"
    assert store.get(job.id).options == {"language": "en"}


def test_get_unknown_raises(store: JobStore) -> None:
    with pytest.raises(JobNotFoundError, match="nope"):
        store.get("nope")


def test_options_must_be_json(store: JobStore) -> None:
    with pytest.raises(UsageError, match="JSON"):
        store.create("/in/a.wav", "a.wav", {"bad": object()})
    assert store.list() == []


def test_list_newest_first_filter_and_limit(store: JobStore, clock: FakeClock) -> None:
    ids = []
    for i in range(5):
        ids.append(store.create(f"/in/{i}.wav", f"{i}.wav").id)
        clock.advance(1)
    assert [j.id for j in store.list()] == ids[::-1]
    assert [j.id for j in store.list(limit=2)] == ids[:2:-1]
    claimed = store.claim("w", 10)
    assert claimed is not None
    assert [j.id for j in store.list(JobStatus.RUNNING)] == [claimed.id]
    assert len(store.list(JobStatus.QUEUED)) == 4
    assert store.list(JobStatus.DONE) == []
    with pytest.raises(ValueError):
        store.list(limit=0)


def test_list_breaks_time_ties_by_insertion_order(store: JobStore) -> None:
    ids = [store.create(f"/in/{i}.wav", f"{i}.wav").id for i in range(3)]  # same clock value
    assert [j.id for j in store.list()] == ids[::-1]


# --- claim --------------------------------------------------------------------------------


def test_claim_empty_returns_none(store: JobStore) -> None:
    assert store.claim("w", 10) is None


def test_claim_sets_running_and_lease(store: JobStore, clock: FakeClock) -> None:
    created = store.create("/in/a.wav", "a.wav")
    clock.advance(5)
    job = store.claim("worker-1", 30)
    assert job is not None and job.id == created.id
    assert job.status is JobStatus.RUNNING
    assert job.started_at == clock.now
    assert job.lease_owner == "worker-1"
    assert job.lease_expires_at == clock.now + 30
    assert job.attempts == 1
    assert store.claim("worker-2", 30) is None


def test_claim_order_priority_then_age(store: JobStore, clock: FakeClock) -> None:
    old_low = store.create("/in/1.wav", "1.wav", priority=0).id
    clock.advance(1)
    old_high = store.create("/in/2.wav", "2.wav", priority=5).id
    clock.advance(1)
    new_low = store.create("/in/3.wav", "3.wav", priority=0).id
    clock.advance(1)
    new_high = store.create("/in/4.wav", "4.wav", priority=5).id
    same_time_low = store.create("/in/5.wav", "5.wav", priority=0).id
    negative = store.create("/in/6.wav", "6.wav", priority=-1).id
    order = []
    while (job := store.claim("w", 10)) is not None:
        order.append(job.id)
    assert order == [old_high, new_high, old_low, new_low, same_time_low, negative]


def test_claim_rejects_bad_lease(store: JobStore) -> None:
    with pytest.raises(ValueError, match="lease_s"):
        store.claim("w", 0)


def _claim_until_empty(path: str, owner: str, ready, go, results) -> None:
    """Runs in a spawned process: claim jobs until none is left, report their ids."""
    with JobStore(path) as store:
        ready.put(owner)
        go.wait(30)
        claimed = []
        while (job := store.claim(owner, lease_s=60)) is not None:
            claimed.append(job.id)
            time.sleep(0.002)  # let the other process in, so claims interleave
        results.put((owner, claimed))


def test_two_processes_never_claim_the_same_job(db_path: Path) -> None:
    with JobStore(db_path) as store:
        ids = {store.create(f"/in/{i}.wav", f"{i}.wav").id for i in range(20)}
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    owners = ["p1", "p2"]
    procs = [
        ctx.Process(target=_claim_until_empty, args=(str(db_path), o, ready, go, results))
        for o in owners
    ]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=30)
        go.set()
        reported = dict(results.get(timeout=30) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    all_claimed = [job_id for owner in owners for job_id in reported[owner]]
    assert sorted(all_claimed) == sorted(ids)  # every job exactly once
    with JobStore(db_path) as store:
        for owner in owners:
            for job_id in reported[owner]:
                job = store.get(job_id)
                assert job.status is JobStatus.RUNNING and job.lease_owner == owner
                assert job.attempts == 1


def test_threads_sharing_one_store_never_claim_the_same_job(db_path: Path) -> None:
    with JobStore(db_path) as shared, JobStore(db_path) as other:
        ids = {shared.create(f"/in/{i}.wav", f"{i}.wav").id for i in range(40)}
        claimed: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(5)

        def claimer(s: JobStore, owner: str) -> None:
            start.wait()
            while (job := s.claim(owner, 60)) is not None:
                s.heartbeat(job.id, owner, 60)
                with lock:
                    claimed.append(job.id)

        threads = [threading.Thread(target=claimer, args=(shared, f"t{i}")) for i in range(4)]
        threads.append(threading.Thread(target=claimer, args=(other, "other")))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(claimed) == sorted(ids)


# --- transitions --------------------------------------------------------------------------


@pytest.mark.parametrize("current", list(JobStatus))
@pytest.mark.parametrize("target", list(JobStatus))
def test_transition_table(current: JobStatus, target: JobStatus) -> None:
    expected = {
        (JobStatus.QUEUED, JobStatus.RUNNING),
        (JobStatus.QUEUED, JobStatus.CANCELLED),
        (JobStatus.RUNNING, JobStatus.DONE),
        (JobStatus.RUNNING, JobStatus.FAILED),
        (JobStatus.RUNNING, JobStatus.CANCELLED),
        (JobStatus.RUNNING, JobStatus.QUEUED),
    }
    assert can_transition(current, target) == ((current, target) in expected)
    if (current, target) in expected:
        check_transition("j", current, target)
    else:
        with pytest.raises(InvalidTransitionError, match=f"from {current.value} to {target.value}"):
            check_transition("j", current, target)


def test_terminal_statuses() -> None:
    assert {s for s in JobStatus if s.is_terminal} == {
        JobStatus.DONE,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    }
    assert set(TRANSITIONS) == set(JobStatus)
    assert JobStatus("done") is JobStatus.DONE and JobStatus.DONE == "done"


def test_finish(store: JobStore, clock: FakeClock) -> None:
    job = _running(store, clock)
    clock.advance(7)
    done = store.finish(job.id, {"srt": "/out/a.srt", "vtt": "/out/a.vtt"})
    assert done.status is JobStatus.DONE
    assert done.progress == 1.0
    assert done.finished_at == clock.now
    assert done.outputs == {"srt": "/out/a.srt", "vtt": "/out/a.vtt"}
    assert done.lease_owner is None and done.lease_expires_at is None
    assert store.get(job.id) == done


def test_fail(store: JobStore, clock: FakeClock) -> None:
    job = _running(store, clock)
    failed = store.fail(job.id, "chunk 3 failed on every attempt")
    assert failed.status is JobStatus.FAILED
    assert failed.error == "chunk 3 failed on every attempt"
    assert failed.finished_at == clock.now and failed.lease_owner is None


def test_invalid_transitions_raise_and_change_nothing(store: JobStore) -> None:
    queued = store.create("/in/a.wav", "a.wav")
    with pytest.raises(InvalidTransitionError, match=f"job {queued.id} cannot go from queued"):
        store.finish(queued.id, {"srt": "x"})
    with pytest.raises(InvalidTransitionError):
        store.fail(queued.id, "boom")
    assert store.get(queued.id) == queued
    job = store.claim("w", 10)
    assert job is not None
    done = store.finish(job.id, {})
    for action in (
        lambda: store.finish(job.id, {}),
        lambda: store.fail(job.id, "late"),
        lambda: store.cancel(job.id),
    ):
        with pytest.raises(InvalidTransitionError, match="from done"):
            action()
    assert store.get(job.id) == done


def test_finish_and_fail_check_owner_when_given(store: JobStore, clock: FakeClock) -> None:
    job = _running(store, clock, owner="w1")
    with pytest.raises(InvalidTransitionError, match="lease was lost"):
        store.finish(job.id, {}, owner="w2")
    with pytest.raises(InvalidTransitionError, match="lease was lost"):
        store.fail(job.id, "x", owner="w2")
    assert store.get(job.id).status is JobStatus.RUNNING
    assert store.finish(job.id, {}, owner="w1").status is JobStatus.DONE


def test_actions_on_unknown_job_raise_not_found(store: JobStore) -> None:
    for action in (
        lambda: store.finish("x", {}),
        lambda: store.fail("x", "e"),
        lambda: store.cancel("x"),
        lambda: store.is_cancelled("x"),
        lambda: store.heartbeat("x", "w", 10),
        lambda: store.set_plan("x", 1.0, 1),
        lambda: store.save_chunk("x", 0, "{}"),
        lambda: store.chunk_results("x"),
        lambda: store.mark_input_deleted("x"),
    ):
        with pytest.raises(JobNotFoundError):
            action()


# --- cancel -------------------------------------------------------------------------------


def test_cancel_queued(store: JobStore, clock: FakeClock) -> None:
    job = store.create("/in/a.wav", "a.wav")
    assert not store.is_cancelled(job.id)
    cancelled = store.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.finished_at == clock.now
    assert store.is_cancelled(job.id)
    assert store.claim("w", 10) is None


def test_cancel_running_loses_the_lease(store: JobStore, clock: FakeClock) -> None:
    job = _running(store, clock)
    store.cancel(job.id)
    assert store.is_cancelled(job.id)
    assert store.heartbeat(job.id, "w1", 30) is False
    assert store.save_chunk(job.id, 0, "late") is False
    assert store.chunk_results(job.id) == {}
    with pytest.raises(InvalidTransitionError, match="from cancelled to done"):
        store.finish(job.id, {})
    assert store.sweep(now=clock.now + 1e6) == []


def test_cancel_finished_raises(store: JobStore, clock: FakeClock) -> None:
    job = _running(store, clock)
    store.fail(job.id, "boom")
    with pytest.raises(InvalidTransitionError, match="failed is final"):
        store.cancel(job.id)
    other = store.create("/in/b.wav", "b.wav")
    store.cancel(other.id)
    with pytest.raises(InvalidTransitionError, match="from cancelled to cancelled"):
        store.cancel(other.id)


# --- plan, chunks, progress ---------------------------------------------------------------


def test_chunks_progress_and_idempotent_save(store: JobStore, clock: FakeClock) -> None:
    job = _running(store, clock)
    planned = store.set_plan(job.id, 125.5, 4)
    assert planned.duration == 125.5 and planned.chunks_total == 4 and planned.progress == 0.0
    assert store.save_chunk(job.id, 2, '{"text": "c"}')
    assert store.save_chunk(job.id, 0, '{"text": "a"}')
    j = store.get(job.id)
    assert j.chunks_done == 2 and j.progress == pytest.approx(0.5)
    assert store.save_chunk(job.id, 2, '{"text": "c2"}')  # again: replaces, does not count twice
    j = store.get(job.id)
    assert j.chunks_done == 2 and j.progress == pytest.approx(0.5)
    assert store.chunk_results(job.id) == {0: '{"text": "a"}', 2: '{"text": "c2"}'}
    store.save_chunk(job.id, 1, "b")
    store.save_chunk(job.id, 3, "d")
    j = store.get(job.id)
    assert j.chunks_done == 4 and j.progress == 1.0
    assert list(store.chunk_results(job.id)) == [0, 1, 2, 3]


def test_save_chunk_validates_index(store: JobStore, clock: FakeClock) -> None:
    job = _running(store, clock)
    store.set_plan(job.id, 10.0, 2)
    with pytest.raises(ValueError, match="out of range"):
        store.save_chunk(job.id, 2, "x")
    with pytest.raises(ValueError, match=">= 0"):
        store.save_chunk(job.id, -1, "x")
    with pytest.raises(ValueError, match=">= 0"):
        store.set_plan(job.id, 10.0, -1)


def test_chunk_results_survive_reopen(db_path: Path, clock: FakeClock) -> None:
    with JobStore(db_path, clock=clock) as s:
        job = s.create("/in/a.wav", "a.wav")
        s.claim("w", 10)
        s.set_plan(job.id, 60.0, 3)
        s.save_chunk(job.id, 0, "zero")
        s.save_chunk(job.id, 1, "one")
    with JobStore(db_path, clock=clock) as s:
        assert s.chunk_results(job.id) == {0: "zero", 1: "one"}
        j = s.get(job.id)
        assert j.chunks_done == 2 and j.progress == pytest.approx(2 / 3)


def test_set_plan_again_keeps_results_and_a_new_plan_drops_them(
    store: JobStore, clock: FakeClock
) -> None:
    job = _running(store, clock)
    store.set_plan(job.id, 60.0, 3)
    store.save_chunk(job.id, 0, "zero")
    assert store.set_plan(job.id, 60.0, 3).chunks_done == 1  # resume with the same plan
    replanned = store.set_plan(job.id, 60.0, 5)
    assert replanned.chunks_done == 0 and replanned.progress == 0.0
    assert store.chunk_results(job.id) == {}


def test_save_before_plan_then_plan_sets_progress(store: JobStore, clock: FakeClock) -> None:
    job = _running(store, clock)
    store.save_chunk(job.id, 0, "zero")
    j = store.get(job.id)
    assert j.chunks_done == 1 and j.progress == 0.0  # no total yet
    assert store.set_plan(job.id, 30.0, 2).progress == pytest.approx(0.5)


def test_empty_plan_and_finish(store: JobStore, clock: FakeClock) -> None:
    job = _running(store, clock)
    assert store.set_plan(job.id, 0.0, 0).progress == 0.0  # silent audio: nothing to do
    assert store.finish(job.id, {"srt": "/out/a.srt"}).progress == 1.0


# --- leases, sweep, requeue ---------------------------------------------------------------


def test_heartbeat_extends_the_lease(store: JobStore, clock: FakeClock) -> None:
    job = _running(store, clock, lease_s=30)
    clock.advance(20)
    assert store.heartbeat(job.id, "w1", 30) is True
    assert store.get(job.id).lease_expires_at == clock.now + 30
    clock.advance(20)  # 40 s after the claim: expired without the heartbeat
    assert store.sweep() == []
    assert store.heartbeat(job.id, "intruder", 30) is False


def test_sweep_requeues_expired_but_not_live(store: JobStore, clock: FakeClock) -> None:
    dead = _running(store, clock, owner="dead", lease_s=10)
    live = _running(store, clock, owner="live", lease_s=100)
    queued = store.create("/in/q.wav", "q.wav")
    store.set_plan(dead.id, 90.0, 3)
    store.save_chunk(dead.id, 0, "zero")
    clock.advance(9)
    assert store.sweep() == []
    clock.advance(1)  # dead's lease ends now
    assert store.sweep() == [dead.id]
    requeued = store.get(dead.id)
    assert requeued.status is JobStatus.QUEUED
    assert requeued.lease_owner is None and requeued.lease_expires_at is None
    assert requeued.started_at is None
    assert requeued.chunks_done == 1 and requeued.progress == pytest.approx(1 / 3)
    assert store.chunk_results(dead.id) == {0: "zero"}
    assert store.get(live.id).status is JobStatus.RUNNING
    assert store.get(queued.id).status is JobStatus.QUEUED
    assert store.heartbeat(dead.id, "dead", 10) is False  # a zombie learns it lost the job
    assert store.sweep() == []


def test_sweep_with_explicit_now(store: JobStore, clock: FakeClock) -> None:
    job = _running(store, clock, lease_s=10)
    assert store.sweep(now=clock.now + 5) == []
    assert store.sweep(now=clock.now + 11) == [job.id]


def test_requeued_job_resumes_with_its_chunks(store: JobStore, clock: FakeClock) -> None:
    first = _running(store, clock, owner="w1", lease_s=10)
    store.set_plan(first.id, 90.0, 3)
    store.save_chunk(first.id, 0, "zero")
    clock.advance(11)
    store.sweep()
    again = store.claim("w2", 10)
    assert again is not None and again.id == first.id
    assert again.attempts == 2 and again.lease_owner == "w2"
    assert store.chunk_results(again.id) == {0: "zero"}
    store.save_chunk(again.id, 1, "one")
    store.save_chunk(again.id, 2, "two")
    with pytest.raises(InvalidTransitionError, match="lease was lost"):
        store.finish(again.id, {}, owner="w1")
    assert store.finish(again.id, {"srt": "/o.srt"}, owner="w2").status is JobStatus.DONE


def test_requeue_running_of_owner(store: JobStore, clock: FakeClock) -> None:
    mine = [_running(store, clock, owner="me").id for _ in range(2)]
    theirs = _running(store, clock, owner="them")
    assert store.requeue_running_of("me") == mine
    assert all(store.get(i).status is JobStatus.QUEUED for i in mine)
    assert store.get(theirs.id).status is JobStatus.RUNNING
    assert store.requeue_running_of("me") == []


# --- counts and retention -----------------------------------------------------------------


def test_counts(store: JobStore, clock: FakeClock) -> None:
    assert store.counts() == dict.fromkeys(JobStatus, 0)
    for i in range(6):
        store.create(f"/in/{i}.wav", f"{i}.wav")
    a, b, c, d = (store.claim("w", 10) for _ in range(4))
    assert a and b and c and d
    store.finish(a.id, {})
    store.fail(b.id, "x")
    store.cancel(c.id)
    assert store.counts() == {
        JobStatus.QUEUED: 2,
        JobStatus.RUNNING: 1,
        JobStatus.DONE: 1,
        JobStatus.FAILED: 1,
        JobStatus.CANCELLED: 1,
    }


def test_retention_query_and_mark_input_deleted(store: JobStore, clock: FakeClock) -> None:
    done = _running(store, clock)
    store.finish(done.id, {"srt": "/out/a.srt"})
    clock.advance(10)
    failed = _running(store, clock)
    store.fail(failed.id, "x")
    clock.advance(10)
    cancelled = store.cancel(store.create("/in/c.wav", "c.wav").id)
    running = _running(store, clock)
    store.create("/in/q.wav", "q.wav")
    clock.advance(10)
    assert store.finished_before(clock.now - 30) == []  # strictly before
    assert [j.id for j in store.finished_before(clock.now - 25)] == [done.id]
    assert [j.id for j in store.finished_before(clock.now - 15)] == [done.id, failed.id]
    assert [j.id for j in store.finished_before(clock.now)] == [done.id, failed.id, cancelled.id]
    assert [j.id for j in store.finished_before(clock.now, limit=1)] == [done.id]

    marked = store.mark_input_deleted(done.id)
    assert marked.input_deleted is True and marked.outputs == {"srt": "/out/a.srt"}
    assert marked.status is JobStatus.DONE
    assert [j.id for j in store.finished_before(clock.now)] == [failed.id, cancelled.id]
    with pytest.raises(InvalidTransitionError, match="only a finished job"):
        store.mark_input_deleted(running.id)


# --- a property over random histories -----------------------------------------------------

_ops = st.lists(
    st.tuples(
        st.sampled_from(
            ["create", "claim", "finish", "fail", "cancel", "chunk", "tick", "sweep", "beat"]
        ),
        st.integers(min_value=0, max_value=7),
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_ops)
def test_random_histories_keep_the_invariants(tmp_path: Path, ops: list[tuple[str, int]]) -> None:
    clock = FakeClock()
    path = tmp_path / f"prop-{time.monotonic_ns()}.db"
    with JobStore(path, clock=clock) as s:
        ids: list[str] = []
        for op, n in ops:
            pick = ids[n % len(ids)] if ids else None
            try:
                if op == "create":
                    job = s.create(f"/in/{n}.wav", f"{n}.wav", priority=n % 3)
                    ids.append(job.id)
                    s.set_plan(job.id, 10.0 * n, n % 4)
                elif op == "claim":
                    s.claim(f"w{n % 2}", 5)
                elif op == "tick":
                    clock.advance(n)
                elif op == "sweep":
                    s.sweep()
                elif pick is None:
                    continue
                elif op == "finish":
                    s.finish(pick, {"srt": "/o.srt"})
                elif op == "fail":
                    s.fail(pick, "boom")
                elif op == "cancel":
                    s.cancel(pick)
                elif op == "chunk":
                    s.save_chunk(pick, n % 4, f"c{n}")
                elif op == "beat":
                    s.heartbeat(pick, f"w{n % 2}", 5)
            except (InvalidTransitionError, ValueError):
                pass
        jobs = s.list(limit=1000)
        assert len(jobs) == len(ids)
        assert sum(s.counts().values()) == len(ids)
        for job in jobs:
            assert 0.0 <= job.progress <= 1.0
            assert job.chunks_done == len(s.chunk_results(job.id))
            running = job.status is JobStatus.RUNNING
            assert (job.lease_owner is not None) == running
            assert (job.lease_expires_at is not None) == running
            assert (job.started_at is not None) == running or job.status.is_terminal
            assert (job.finished_at is not None) == job.status.is_terminal
            if job.status is JobStatus.DONE:
                assert job.progress == 1.0 and job.outputs == {"srt": "/o.srt"}
            if job.status is JobStatus.FAILED:
                assert job.error == "boom"
