"""The pool on Ray: a real local Ray instance (logical GPUs on this CPU machine) and a second node.

One local instance (``ray.init(num_cpus=2, num_gpus=2)``) is shared by the tests of this module.
The two-node test starts its own cluster with ``ray start`` (a head and a second node on this
machine) and drives it from a separate process: a driver connects to one cluster at a time, and
Ray's token authentication, once a process has started a local instance, would not let that
process join the other cluster cleanly.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'whisper-subs[ray]'")

from conftest import normalize_text, shared_file  # noqa: E402
from whisper_subs.backends import make_pool  # noqa: E402
from whisper_subs.engine import DecodeOptions, EngineSpec, FakeBehaviour  # noqa: E402
from whisper_subs.errors import ChunkFailedError, UsageError  # noqa: E402
from whisper_subs.pool import ChunkTask, DeviceSlots, WorkerPool  # noqa: E402
from whisper_subs.ray_pool import (  # noqa: E402
    NAMESPACE,
    RayOptions,
    RayPool,
    cluster_plan,
    format_cluster,
)
from whisper_subs.types import SAMPLE_RATE  # noqa: E402

pytestmark = pytest.mark.timeout(120)

OPTIONS = DecodeOptions(language="en", beam_size=1)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance with two logical GPUs, shared by the tests of this module."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, namespace=NAMESPACE)
    yield
    ray.shutdown()


def fake_cpu(slots: int = 1, batch_size: int = 1, **behaviour: Any) -> DeviceSlots:
    engine = EngineSpec("fake", "cpu", cpu_threads=1, fake=FakeBehaviour(**behaviour))
    return DeviceSlots("cpu", slots, engine, {"OMP_NUM_THREADS": "1"}, batch_size)


def chunk(index: int, seconds: float = 1.0, group: str = "g") -> ChunkTask:
    return ChunkTask(group, index, np.zeros(round(seconds * SAMPLE_RATE), np.float32), OPTIONS)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# -- real audio --------------------------------------------------------------------------------


def test_real_audio_same_text_as_local_pool(local_ray: None) -> None:
    from whisper_subs.chunking import ChunkOptions
    from whisper_subs.models import resolve_model
    from whisper_subs.pipeline import PipelineOptions, prepare

    options = PipelineOptions(decode=OPTIONS, chunking=ChunkOptions(max_chunk_s=6, min_chunk_s=2))
    prepared = prepare(shared_file("openai-whisper/jfk.flac"), options)
    tasks = prepared.tasks("jfk", OPTIONS)
    assert len(tasks) >= 2  # several chunks, batched together below
    model = resolve_model("tiny.en").location
    slots = [
        DeviceSlots(
            "cpu",
            1,
            EngineSpec(model, "cpu", "int8", cpu_threads=1),
            {"OMP_NUM_THREADS": "1"},
            batch_size=len(tasks),
        )
    ]

    def texts(pool: Any) -> list[str]:
        assert pool.wait_ready(60)
        futures = [pool.submit(t) for t in tasks]
        return ["".join(s.text for s in f.result(60).segments) for f in futures]

    with RayPool(slots) as ray_pool:
        on_ray = texts(ray_pool)
        status = ray_pool.status()
    with WorkerPool(slots) as local_pool:
        local = texts(local_pool)
    assert on_ray == local
    assert "ask not what your country can do for you" in normalize_text(" ".join(on_ray))
    assert status.model_loads == 1 and status.worker_deaths == 0
    (row,) = status.devices
    assert row.device_id.endswith("/cpu") and row.done == len(tasks) and row.failures == 0


# -- placement ---------------------------------------------------------------------------------


def test_gpu_actors_get_different_cuda_visible_devices(local_ray: None) -> None:
    fake = EngineSpec("fake", "cuda", fake=FakeBehaviour(seconds_per_audio_s=0.02))
    # As the local plan writes them: each pinned to a GPU UUID of this machine, which an actor
    # must replace with the GPU Ray gave it.
    slots = [
        DeviceSlots("cuda:0", 1, fake, {"CUDA_VISIBLE_DEVICES": "GPU-aaaa"}, batch_size=2),
        DeviceSlots("cuda:1", 1, fake, {"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}, batch_size=2),
    ]
    events: list[tuple[str, dict[str, Any]]] = []
    with RayPool(slots, on_event=lambda kind, data: events.append((kind, data))) as pool:
        assert pool.wait_ready(60)
        wait_for(lambda: len(pool.actors()) == 2, 60, "both actors")
        futures = [pool.submit(chunk(i, seconds=2.0)) for i in range(12)]
        assert all(f.result(60).segments for f in futures)
        actors = pool.actors()
        status = pool.status()
    assert sorted(a.cuda_visible_devices for a in actors) == ["0", "1"]
    assert sorted(a.gpu_ids for a in actors) == [("0",), ("1",)]
    rows = {d.device_id.split("/")[-1]: d for d in status.devices}
    assert sorted(rows) == ["cuda:0", "cuda:1"]
    assert sum(r.done for r in rows.values()) == 12 and all(r.done for r in rows.values())
    done = [d for kind, d in events if kind == "chunk_done"]
    # As from WorkerPool, "device" is the plan's device; "placement" is where Ray put it.
    assert {d["device"] for d in done} == {"cuda:0", "cuda:1"}
    assert {d["placement"].split("/")[-1] for d in done} == {"cuda:0", "cuda:1"}


def test_several_workers_share_a_gpu_by_fraction(local_ray: None) -> None:
    # The plan puts 4 workers on one GPU: each asks Ray for a quarter. Were it asking for a
    # whole GPU, only 2 of the 4 could be placed on this 2-GPU instance.
    fake = EngineSpec("fake", "cuda", fake=FakeBehaviour())
    options = RayOptions(gpu_actor_cpus=0)
    with RayPool([DeviceSlots("cuda:0", 4, fake, {}, 1)], options=options) as pool:
        wait_for(lambda: len(pool.actors()) == 4, 60, "four actors placed")
        actors = pool.actors()
        # Four quarters taken: one of the two GPUs is left (Ray reports usage with a lag).
        wait_for(lambda: ray.available_resources().get("GPU") == 1.0, 30, "1 GPU available")
    assert all(len(a.gpu_ids) == 1 and a.cuda_visible_devices == a.gpu_ids[0] for a in actors)


# -- failures ----------------------------------------------------------------------------------


def test_actor_crash_mid_chunk_loses_nothing(local_ray: None, tmp_path: Path) -> None:
    (tmp_path / "g-3.crash").touch()  # the actor process dies (os._exit) on chunk 3, once
    events: list[str] = []
    slots = [fake_cpu(2, seconds_per_audio_s=0.05, crash_marker_dir=str(tmp_path))]
    with RayPool(slots, on_event=lambda kind, data: events.append(kind)) as pool:
        assert pool.wait_ready(60)
        futures = [pool.submit(chunk(i)) for i in range(8)]
        texts = [f.result(60).segments[0].text for f in futures]
        status = pool.status()
    assert texts == [f" fake transcript of g-{i}" for i in range(8)]
    assert not (tmp_path / "g-3.crash").exists()
    assert status.worker_deaths == 1 and status.retries == 1 and "worker_died" in events
    assert sum(d.done for d in status.devices) == 8
    assert sum(d.failures for d in status.devices) == 1


def test_actor_killed_for_good_is_replaced(local_ray: None) -> None:
    with RayPool([fake_cpu(1, seconds_per_audio_s=0.5)]) as pool:
        assert pool.wait_ready(60)
        futures = [pool.submit(chunk(i, seconds=2.0)) for i in range(3)]
        wait_for(lambda: pool.status().active > 0, 30, "a chunk in flight")
        (info,) = pool.actors()
        ray.kill(ray.get_actor(info.name, namespace=NAMESPACE), no_restart=True)
        texts = [f.result(60).segments[0].text for f in futures]
        status = pool.status()
        (replacement,) = pool.actors()
    assert texts == [f" fake transcript of g-{i}" for i in range(3)]
    assert status.worker_deaths == 1 and status.model_loads == 2
    assert replacement.name != info.name and replacement.pid != info.pid


def test_failing_chunk_is_reported_after_its_attempts(local_ray: None, tmp_path: Path) -> None:
    (tmp_path / "g-1.fail").touch()  # raises on every attempt
    with RayPool([fake_cpu(2, fail_marker_dir=str(tmp_path))]) as pool:
        futures = [pool.submit(chunk(i)) for i in range(4)]
        with pytest.raises(ChunkFailedError, match=r"chunk 1 of g .* failed 2 times"):
            futures[1].result(60)
        assert [futures[i].result(60).segments[0].text for i in (0, 2, 3)] == [
            f" fake transcript of g-{i}" for i in (0, 2, 3)
        ]
        status = pool.status()
    assert status.retries == 1 and sum(d.failures for d in status.devices) == 2


# -- the cluster view and the back-end switch --------------------------------------------------


def test_cluster_plan_shows_nodes_slots_and_active_chunks(local_ray: None) -> None:
    pool = RayPool([fake_cpu(1, seconds_per_audio_s=1.0)])
    try:
        assert pool.wait_ready(60)
        future = pool.submit(chunk(0, seconds=60.0))  # a minute: still running when we look
        wait_for(lambda: pool.status().active == 1, 30, "the chunk in flight")
        plan = cluster_plan("tiny.en", batch_size=1)
    finally:
        pool.close(timeout=1.0)  # does not wait out the minute: the chunk's Future is cancelled
    assert future.cancelled()
    (node,) = plan.nodes
    assert node.alive and node.cpus == 2 and node.gpus == 2
    assert node.plan is not None and node.slots >= 1  # planned on the node: its cores and RAM
    (actor,) = node.actors
    assert actor.active == 1 and node.active == 1 and plan.active == 1
    text = format_cluster(plan)
    assert node.label in text and "1 chunk(s) active" in text
    assert json.loads(json.dumps(plan.to_json()))["nodes"][0]["actors"][0]["active"] == 1


def test_make_pool_picks_the_back_end(local_ray: None) -> None:
    with pytest.raises(UsageError, match="--backend"):
        make_pool("dask", [fake_cpu()])
    with pytest.raises(UsageError, match="--ray-address needs --backend ray"):
        make_pool("local", [fake_cpu()], ray_address="auto")
    for backend, kind in (("ray", RayPool), ("local", WorkerPool)):
        with make_pool(backend, [fake_cpu()], max_attempts=2) as pool:
            assert isinstance(pool, kind)
            assert pool.submit(chunk(0)).result(60).segments[0].text == " fake transcript of g-0"
            assert pool.status().max_concurrent == 1


def test_plan_cluster_workers_plans_each_node_and_pins_its_actors(local_ray: None) -> None:
    from whisper_subs.models import ResolvedModel
    from whisper_subs.ray_pool import plan_cluster_workers
    from whisper_subs.workers import WorkerOptions

    model = ResolvedModel("tiny.en", "/nowhere/tiny.en", local=True)
    # Two fake 16 GiB GPUs on the node: room for many workers each, but the node has 2 CPUs and
    # each GPU actor reserves one, so one worker per GPU.
    options = WorkerOptions(fake_gpus="16/16,16/16", batch_size=1)
    cluster, slots, ray_options = plan_cluster_workers(model, options, FakeBehaviour())
    (node,) = cluster.nodes
    assert [s.device_id for s in slots] == [f"{node.label}/cuda:0", f"{node.label}/cuda:1"]
    assert [s.slots for s in slots] == [1, 1] and all(s.engine.device == "cuda" for s in slots)
    assert ray_options.node_affinity == {s.device_id: node.node_id for s in slots}
    assert ray_options.model_name == "tiny.en"
    with make_pool("ray", slots, **{"options": ray_options}) as pool:
        assert isinstance(pool, RayPool)
        futures = [pool.submit(chunk(i)) for i in range(4)]
        assert all(f.result(60).segments for f in futures)
        wait_for(lambda: len(pool.actors()) == 2, 60, "both actors")
        assert sorted(a.cuda_visible_devices for a in pool.actors()) == ["0", "1"]

    _, cpu_slots, _ = plan_cluster_workers(model, WorkerOptions(device="cpu", threads=1))
    assert [(s.device_id, s.slots, s.engine.cpu_threads) for s in cpu_slots] == [
        (f"{node.label}/cpu", 2, 1)
    ]


def test_a_node_without_the_head_model_folder_resolves_the_name_itself() -> None:
    from whisper_subs.models import resolve_model
    from whisper_subs.ray_pool import _localise_model

    spec = EngineSpec("/nowhere/on/this/node/tiny.en", "cpu", "int8")
    assert _localise_model(spec, "tiny.en").model == resolve_model("tiny.en").location
    assert _localise_model(spec, None) is spec  # nothing to resolve: the error comes at load


def test_nothing_but_the_ray_back_end_imports_ray() -> None:
    code = (
        "import importlib, sys\n"
        "for name in ('backends', 'cli', 'pipeline', 'pool', 'workers', 'jobs', 'simulate',"
        " 'bench', 'service', 'api'):\n"
        "    try:\n"
        "        importlib.import_module('whisper_subs.' + name)\n"
        "    except ImportError as exc:\n"
        "        if 'ray' in str(exc): raise\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]


# -- a second node -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--block",
        "--disable-usage-stats",
        "--node-ip-address=127.0.0.1",
        "--num-gpus=0",
        *args,
    ]
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped as a whole below
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a `ray start --block` and the Ray processes it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(3.0)
    with contextlib.suppress(ProcessLookupError):  # whatever of the group is left
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10.0)


@pytest.fixture
def two_nodes() -> Iterator[tuple[str, dict[str, str]]]:
    """A head (1 CPU) and a second node (1 CPU, resource node2) on this machine."""
    temp_dir = tempfile.mkdtemp(prefix="wsray-", dir="/tmp")  # short: socket paths are limited
    # Token authentication with a token of this test's own, for all three processes.
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    address = f"127.0.0.1:{_free_port()}"
    head = _ray_start(
        [
            "--head",
            f"--port={address.split(':')[1]}",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--temp-dir={temp_dir}",
        ],
        env,
    )
    node2 = _ray_start([f"--address={address}", "--num-cpus=1", '--resources={"node2": 1}'], env)
    try:
        yield address, env
    finally:
        _stop(node2)
        _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.timeout(150)
def test_second_node_serves_chunks(two_nodes: tuple[str, dict[str, str]]) -> None:
    address, env = two_nodes
    result = subprocess.run(
        [sys.executable, __file__, "--drive-cluster", address],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    nodes = {n["node_id"]: n for n in report["nodes"] if n["alive"]}
    assert len(nodes) == 2
    (second,) = [node_id for node_id, n in nodes.items() if n["resources"].get("node2") == 1]
    assert report["texts"] == [f" fake transcript of g-{i}" for i in range(8)]
    assert set(report["served_by"]) == set(nodes)  # both nodes transcribed chunks
    assert second in report["served_by"]
    # The cluster view lists one actor on each node, seen from this second driver.
    assert sorted(len(n["actors"]) for n in nodes.values()) == [1, 1]


def _drive_cluster(address: str) -> None:
    """The driver of test_second_node_serves_chunks, in its own process: prints a JSON report."""
    ray.init(address=address, namespace=NAMESPACE)
    deadline = time.monotonic() + 60
    while sum(n["Alive"] for n in ray.nodes()) < 2:
        if time.monotonic() > deadline:
            raise SystemExit("the second node did not join within 60 s")
        time.sleep(0.2)
    served_by: list[str] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "chunk_done":
            served_by.append(data["node"])

    # Two CPU actors of 1 CPU each: one fits on each node.
    with RayPool([fake_cpu(2, seconds_per_audio_s=0.1)], on_event=on_event) as pool:
        wait_for(lambda: len(pool.actors()) == 2, 60, "an actor on each node")
        futures = [pool.submit(chunk(i)) for i in range(8)]
        texts = [f.result(60).segments[0].text for f in futures]
        plan = cluster_plan(None)
    report = {"texts": texts, "served_by": sorted(set(served_by)), **plan.to_json()}
    sys.stdout.write(json.dumps(report) + "\n")
    ray.shutdown()


if __name__ == "__main__" and sys.argv[1:2] == ["--drive-cluster"]:
    _drive_cluster(sys.argv[2])
