"""The worker pool on a Ray cluster: one actor per device slot, the same interface as WorkerPool.

``RayPool`` is the second back end of the pool (``backends.make_pool`` picks one); the runner and
the CLI see the same ``submit`` / ``cancel_group`` / ``status`` / ``wait_ready`` / ``set_slots`` /
``close`` as the local ``pool.WorkerPool`` and the same guarantees:

- One actor per slot of the plan (``DeviceSlots``). GPU actors ask Ray for ``num_gpus=1``, or
  ``1/slots`` when the plan puts several workers on one GPU; CPU actors for ``num_cpus=threads``.
  Each actor sets ``CUDA_VISIBLE_DEVICES`` from the GPUs Ray gave it (``ray.get_gpu_ids()``; the
  local plan's GPU UUIDs mean nothing on another node) and loads its model once, in its
  constructor. Ray places the actors over nodes and GPUs (``SPREAD`` unless pinned per node by
  ``plan_cluster_workers``).
- Pull scheduling with the same ``scheduling.Scheduler`` (priority, fairness between groups,
  longest chunk first, batches of one options key, avoid the worker a chunk failed on), with at
  most ``RayOptions.max_in_flight`` chunks sent to an actor before it answers (default: one batch).
- Our attempt count decides retries. Ray's task retries stay off (``max_task_retries=0``): a chunk
  that kills its actor must not kill every restart. A dead actor is restarted by Ray
  (``max_restarts``) or, once that budget is spent or it was killed for good, replaced by a fresh
  actor; its in-flight chunks go back in the queue (counted as one attempt, as the local pool
  counts a dead worker). An out-of-memory error takes a slot away (``capacity.shrink_after_oom``).
- ``status()`` is the same ``PoolStatus``; its rows are placements, ``"<node>/<device>"`` (for
  example ``"10.0.0.7#3f2a9c/cuda:1"``), with ``"starting/<plan device>"`` for actors that are
  still being placed or loading.

Chunk results come back to the driver (the runner on the head/API machine), which resolves each
chunk's Future; the job store there stays the single source of truth.

Actors are named (``ws-<pool>-<n>`` in the ``whisper-subs`` namespace) so that ``cluster_plan``
can list every pool's actors, their node, GPUs and active chunks from another process
(``whisper-subs devices --backend ray``). This is the only module that imports Ray.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .capacity import (
    CapacityOptions,
    CapacityPlan,
    OomAction,
    format_plan,
    plan_capacity,
    shrink_after_oom,
)
from .engine import DecodeOptions, EngineSpec, FakeBehaviour, load_engine
from .errors import DeviceError, OutOfMemoryError, UsageError, WhisperSubsError
from .ledger import PoolBase, cancel, settle
from .models import ResolvedModel
from .pool import DeviceSlots, DeviceStatus, PoolStatus
from .workers import WorkerOptions, batch_size_for, compute_type_for, engine_for

log = logging.getLogger(__name__)

NAMESPACE = "whisper-subs"  # Ray namespace of every actor this module creates
ACTOR_PREFIX = "ws-"  # actor names: ws-<pool token>-<actor number>
MAX_LOAD_FAILURES = 3  # consecutive actors of one plan device dying while loading: give it up
_PROBE_RETRY_S = 0.25  # an actor that is restarting is asked again after this long
_GPU_FRACTION_STEP = 10_000  # Ray accepts GPU fractions to 4 decimal places


@dataclass(frozen=True, slots=True)
class RayOptions:
    """How the pool uses Ray. Read once at the edge (CLI, app factory) and passed down."""

    # None: RAY_ADDRESS, else a cluster started on this machine with `ray start`, else a new
    # local instance; "auto": an existing cluster only; "ray://host:10001": Ray Client.
    address: str | None = None
    max_in_flight: int | None = None  # chunks sent to one actor before it answers; None: a batch
    max_restarts: int = 3  # Ray restarts of one actor before a fresh actor replaces it
    gpu_actor_cpus: float = 1.0  # CPUs a GPU actor reserves (feature extraction, decoding loop)
    cpu_actor_cpus: float | None = None  # CPUs a CPU actor reserves; None: its engine's threads
    resources: Mapping[str, float] = field(default_factory=dict)  # custom resources per actor
    scheduling_strategy: str = "SPREAD"  # or "DEFAULT" (pack); per-node pins override it
    node_affinity: Mapping[str, str] = field(default_factory=dict)  # plan device id -> node id
    model_name: str | None = None  # resolved again on a node that lacks the head's model folder
    poll_s: float = 0.05  # longest wait before a newly submitted chunk reaches an idle actor

    def __post_init__(self) -> None:
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise UsageError(f"max_in_flight must be at least 1, got {self.max_in_flight}")
        if self.max_restarts < 0:
            raise UsageError(f"max_restarts must be at least 0, got {self.max_restarts}")
        if self.gpu_actor_cpus < 0:
            raise UsageError(f"gpu_actor_cpus must be at least 0, got {self.gpu_actor_cpus}")
        if self.cpu_actor_cpus is not None and self.cpu_actor_cpus < 0:
            raise UsageError(f"cpu_actor_cpus must be at least 0, got {self.cpu_actor_cpus}")
        if self.scheduling_strategy not in ("SPREAD", "DEFAULT"):
            raise UsageError(
                f"scheduling_strategy must be SPREAD or DEFAULT, got {self.scheduling_strategy!r}"
            )


@dataclass(frozen=True, slots=True)
class ActorInfo:
    """What one actor reports about itself (``SlotActor.describe``): where it runs, what it sees."""

    name: str
    plan_device: str  # the DeviceSlots.device_id it serves
    node_id: str
    node_ip: str
    pid: int
    gpu_ids: tuple[str, ...]  # as Ray assigned them on its node
    cuda_visible_devices: str | None  # as the engine saw it when it loaded
    omp_num_threads: str | None
    load_s: float
    load_error: str | None  # set: the model could not be loaded here
    active: int = 0  # chunks it is transcribing now
    done: int = 0  # chunks this process has transcribed

    @property
    def node_label(self) -> str:
        return node_label(self.node_ip, self.node_id)

    @property
    def placement(self) -> str:
        """``"<node>/<device>"``: the row of PoolStatus it counts in."""
        device = f"cuda:{','.join(self.gpu_ids)}" if self.gpu_ids else "cpu"
        return f"{self.node_label}/{device}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plan_device": self.plan_device,
            "node_id": self.node_id,
            "node_ip": self.node_ip,
            "placement": self.placement,
            "pid": self.pid,
            "gpu_ids": list(self.gpu_ids),
            "cuda_visible_devices": self.cuda_visible_devices,
            "omp_num_threads": self.omp_num_threads,
            "load_s": round(self.load_s, 3),
            "load_error": self.load_error,
            "active": self.active,
            "done": self.done,
        }


def node_label(ip: str, node_id: str) -> str:
    """A node as people read it: its address and the start of its id (nodes may share an IP)."""
    return f"{ip}#{node_id[:6]}"


# -- the actor ---------------------------------------------------------------------------------


class SlotActor:
    """One device slot on some node of the cluster; Ray runs it as an actor (``_actor_class``).

    The constructor sets the device environment, then loads the model once. A load error is
    kept and reported by ``describe`` (the driver then gives the device up) rather than raised:
    a raising constructor would make Ray restart it over and over.
    """

    def __init__(
        self,
        spec: EngineSpec,
        env: Mapping[str, str],
        model_name: str | None,
        name: str,
        plan_device: str,
    ) -> None:
        self._name = name
        self._plan_device = plan_device
        # Before the engine loads: CUDA reads CUDA_VISIBLE_DEVICES once, when it starts. The
        # plan's own pin (a GPU UUID of the head machine) means nothing here: Ray chose the GPU.
        os.environ.update({k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"})
        self._gpu_ids = tuple(str(i) for i in ray.get_gpu_ids())
        if self._gpu_ids:
            os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(self._gpu_ids)
        elif spec.device == "cpu":
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # a CPU worker must not grab a GPU
        self._active = 0
        self._done = 0
        self._load_error: str | None = None
        started = time.perf_counter()
        try:
            self._engine: Any = load_engine(_localise_model(spec, model_name))
        except WhisperSubsError as exc:
            self._engine, self._load_error = None, str(exc)
        except Exception as exc:  # a foreign error at load: reported, the driver decides
            self._engine, self._load_error = None, f"{type(exc).__name__}: {exc}"
        self._load_s = time.perf_counter() - started

    @ray.method(concurrency_group="info")
    def describe(self) -> ActorInfo:
        """Where this actor runs and what it sees; answers even while a batch is running."""
        context = ray.get_runtime_context()
        return ActorInfo(
            name=self._name,
            plan_device=self._plan_device,
            node_id=context.get_node_id(),
            node_ip=ray.util.get_node_ip_address(),
            pid=os.getpid(),
            gpu_ids=self._gpu_ids,
            cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
            omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
            load_s=self._load_s,
            load_error=self._load_error,
            active=self._active,
            done=self._done,
        )

    def transcribe(
        self, audios: list[np.ndarray], options: DecodeOptions, tags: list[str]
    ) -> tuple[Any, ...]:
        """One batch: ("done", results, seconds) | ("oom", text) | ("error", text)."""
        if self._engine is None:
            return ("error", f"no model loaded: {self._load_error}")
        started = time.perf_counter()
        self._active = len(audios)
        try:
            results = self._engine.transcribe(audios, options, tags)
        except OutOfMemoryError as exc:
            return ("oom", str(exc))
        except Exception as exc:  # reported to the driver, which retries elsewhere
            return ("error", f"{type(exc).__name__}: {exc}")
        finally:
            self._active = 0
        self._done += len(results)
        return ("done", results, time.perf_counter() - started)


def _localise_model(spec: EngineSpec, model_name: str | None) -> EngineSpec:
    """The head's model folder where it exists on this node, else ``model_name`` resolved here."""
    if spec.fake is not None or not model_name or Path(spec.model).is_dir():
        return spec
    from .models import resolve_model

    location = resolve_model(model_name).location
    if location != spec.model:
        log.info("model %s is not at %s on this node; using %s", model_name, spec.model, location)
    return replace(spec, model=location)


@functools.cache
def _actor_class() -> Any:
    """SlotActor as a Ray actor class: ``describe`` in its own thread, batches one at a time."""
    return ray.remote(concurrency_groups={"info": 1})(SlotActor)


# -- connecting --------------------------------------------------------------------------------


def connect(address: str | None = None) -> bool:
    """Connect this process to Ray unless it already is; True when this call connected it.

    ``address``: see ``RayOptions.address``. Failures become DeviceError with what to do.
    """
    if ray.is_initialized():
        return False
    # Without an address Ray would attach to whatever /tmp/ray/ray_current_cluster names, which
    # may be a cluster that is long gone (it then hangs): use RAY_ADDRESS, else start our own.
    # An existing cluster is joined only when asked (--ray-address auto or an address).
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    try:
        ray.init(address=address, namespace=NAMESPACE)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "RAY_ADDRESS / a local cluster"
        raise DeviceError(
            f"cannot connect to Ray at {where}: {exc}; start a head with `ray start --head` "
            "(and workers with `ray start --address HEAD:6379`), or give --ray-address"
        ) from exc
    return True


# -- the driver side ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Group:
    """A plan device (one DeviceSlots): its actors may land on any node unless pinned."""

    spec: DeviceSlots
    slots: int
    batch_size: int
    num_gpus: float
    num_cpus: float
    load_failures: int = 0
    load_error: str | None = None


@dataclass(slots=True)
class _Actor:
    id: int
    name: str
    group: str
    handle: Any  # ray.actor.ActorHandle
    worker_id: int  # the scheduler's id; a new one per incarnation (a restart is a new worker)
    info: ActorInfo | None = None  # from its last describe(); None while starting/restarting
    ready: bool = False
    retiring: bool = False
    probe: Any = None  # ObjectRef of a describe() in flight
    probe_at: float = 0.0  # when to send the next probe (restarting actors)
    calls: dict[Any, list[int]] = field(default_factory=dict)  # ObjectRef -> task ids, in order

    @property
    def in_flight(self) -> int:
        return sum(len(ids) for ids in self.calls.values())

    @property
    def placement(self) -> str:
        return self.info.placement if self.info is not None else f"starting/{self.group}"


@dataclass(slots=True)
class _Counts:
    done: int = 0
    failures: int = 0
    oom_events: int = 0


class RayPool(PoolBase):
    """Ray actors over a cluster's devices; ``submit`` returns a Future per chunk.

    Same interface and guarantees as ``pool.WorkerPool`` (see the module docstring). ``set_slots``
    takes a plan device id (a ``DeviceSlots.device_id``); ``status()`` rows are placements.
    Connects to Ray if this process is not connected yet (and then disconnects on ``close``).
    """

    def __init__(
        self,
        devices: Sequence[DeviceSlots],
        *,
        max_attempts: int = 2,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        options: RayOptions | None = None,
    ) -> None:
        if not devices or sum(d.slots for d in devices) < 1:
            raise WhisperSubsError("the pool needs at least one worker slot")
        self._options = options or RayOptions()
        self._owns_ray = connect(self._options.address)
        self._groups = {d.device_id: self._group(d) for d in devices}
        super().__init__(max_attempts, on_event)
        self._wake = threading.Event()
        self._actors: dict[int, _Actor] = {}
        self._refs: dict[Any, _Actor] = {}  # every ObjectRef we wait on -> its actor
        self._counts: dict[str, _Counts] = {}  # per placement
        self._actor_ids = itertools.count()
        self._worker_ids = itertools.count()
        self._token = uuid.uuid4().hex[:8]
        self._model_loads = 0
        self._deaths = 0
        self._warn_if_unplaceable()
        with self._lock:
            for group in self._groups.values():
                for _ in range(group.slots):
                    self._start_actor(group)
        self._thread = threading.Thread(target=self._run, name="whisper-subs-ray-pool", daemon=True)
        self._thread.start()

    # -- public API (as WorkerPool; submit, cancel_group, wait_ready in PoolBase) -------------

    def _kick(self) -> None:
        self._wake.set()

    def status(self) -> PoolStatus:
        with self._lock:
            rows: dict[str, dict[str, int]] = {}
            for actor in self._actors.values():
                row = rows.setdefault(
                    actor.placement, {"slots": 0, "workers": 0, "active": 0, "batch_size": 1}
                )
                row["slots"] += 1
                row["workers"] += int(actor.ready)
                row["active"] += actor.in_flight
                row["batch_size"] = max(row["batch_size"], self._groups[actor.group].batch_size)
            for key in self._counts:
                rows.setdefault(key, {"slots": 0, "workers": 0, "active": 0, "batch_size": 1})
            devices = tuple(
                DeviceStatus(
                    device_id=key,
                    slots=row["slots"],
                    workers=row["workers"],
                    active=row["active"],
                    batch_size=row["batch_size"],
                    done=self._counts.get(key, _Counts()).done,
                    failures=self._counts.get(key, _Counts()).failures,
                    oom_events=self._counts.get(key, _Counts()).oom_events,
                )
                for key, row in sorted(rows.items())
            )
            return PoolStatus(
                devices=devices,
                max_concurrent=sum(g.slots for g in self._groups.values()),
                active=sum(d.active for d in devices),
                queued=self._ledger.queued,
                model_loads=self._model_loads,
                worker_deaths=self._deaths,
                retries=self._ledger.retries,
            )

    def set_slots(self, device_id: str, slots: int) -> None:
        """Re-plan one plan device (a DeviceSlots.device_id): start or retire actors.

        A GPU actor keeps the GPU fraction planned at start (1/slots then): growing past that
        leaves the extra actors waiting for GPU room in Ray.
        """
        with self._lock:
            if device_id not in self._groups:
                known = ", ".join(self._groups)
                raise UsageError(f"no plan device {device_id!r} in this pool; known: {known}")
            self._groups[device_id].slots = max(0, slots)
            self._fit_actors(device_id)
        self._wake.set()

    def actors(self) -> tuple[ActorInfo, ...]:
        """What each ready actor reported when it came up: node, GPUs, environment, load time."""
        with self._lock:
            return tuple(a.info for a in self._actors.values() if a.info is not None)

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            futures = self._ledger.cancel_queued()
        for future in futures:
            cancel(future)
        self._wake.set()
        self._thread.join(timeout)
        with self._lock:
            leftover = self._ledger.abandon()  # still running at timeout
            actors = list(self._actors.values())
            self._actors.clear()
            self._refs.clear()
        for future in leftover:
            cancel(future)
        for actor in actors:
            _kill(actor.handle)
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- actors --------------------------------------------------------------------------------

    def _group(self, spec: DeviceSlots) -> _Group:
        if spec.engine.device == "cpu":
            threads = float(max(1, spec.engine.cpu_threads))
            num_gpus = 0.0
            num_cpus = (
                threads if self._options.cpu_actor_cpus is None else self._options.cpu_actor_cpus
            )
        else:
            # Several workers planned on one GPU share it: each asks for its part.
            step = _GPU_FRACTION_STEP
            num_gpus = math.floor(step / max(1, spec.slots)) / step
            num_cpus = self._options.gpu_actor_cpus
        return _Group(spec, spec.slots, max(1, spec.batch_size), num_gpus, num_cpus)

    def _start_actor(self, group: _Group) -> None:
        number = next(self._actor_ids)
        name = f"{ACTOR_PREFIX}{self._token}-{number}"
        device_id = group.spec.device_id
        options: dict[str, Any] = {
            "name": name,
            "namespace": NAMESPACE,
            "num_cpus": group.num_cpus,
            "num_gpus": group.num_gpus,
            "max_restarts": self._options.max_restarts,
            "max_task_retries": 0,  # our attempt count decides; see the module docstring
        }
        if self._options.resources:
            options["resources"] = dict(self._options.resources)
        node = self._options.node_affinity.get(device_id)
        if node is not None:  # soft: if that node dies, the restarted actor goes elsewhere
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        else:
            options["scheduling_strategy"] = self._options.scheduling_strategy
        handle = (
            _actor_class()
            .options(**options)
            .remote(
                group.spec.engine, dict(group.spec.env), self._options.model_name, name, device_id
            )
        )
        actor = _Actor(number, name, device_id, handle, next(self._worker_ids))
        self._actors[actor.id] = actor
        self._send_probe(actor)
        log.debug(
            "started actor %s for %s (%s CPU, %s GPU)",
            name,
            device_id,
            group.num_cpus,
            group.num_gpus,
        )

    def _send_probe(self, actor: _Actor) -> None:
        actor.probe = actor.handle.describe.remote()
        self._refs[actor.probe] = actor

    def _fit_actors(self, device_id: str) -> None:
        group = self._groups[device_id]
        actors = [a for a in self._actors.values() if a.group == device_id and not a.retiring]
        for _ in range(group.slots - len(actors)):
            if group.load_error is None and not self._closing:
                self._start_actor(group)
        surplus = max(0, len(actors) - group.slots)
        for actor in sorted(actors, key=lambda a: (a.ready, a.in_flight))[:surplus]:
            actor.retiring = True  # stops once its current batches are done
            if not actor.calls:
                self._remove(actor)

    def _remove(self, actor: _Actor) -> None:
        """Forget an actor and end it for good (no Ray restart)."""
        self._actors.pop(actor.id, None)
        for ref in [actor.probe, *actor.calls]:
            self._refs.pop(ref, None)
        actor.probe = None
        _kill(actor.handle)

    def _warn_if_unplaceable(self) -> None:
        try:
            total = ray.cluster_resources()
        except RayError:
            return
        for group in self._groups.values():
            short = [
                f"{what} {need:g} (cluster has {total.get(what, 0):g})"
                for what, need in (
                    ("CPU", group.num_cpus),
                    ("GPU", group.num_gpus),
                    *self._options.resources.items(),
                )
                if need > total.get(what, 0)
            ]
            if short:
                log.warning(
                    "actors for %s cannot be placed until the cluster grows: they need %s",
                    group.spec.device_id,
                    ", ".join(short),
                )

    # -- the dispatcher ------------------------------------------------------------------------

    def _run(self) -> None:
        poll = self._options.poll_s
        while True:
            with self._lock:
                if self._closing and not any(a.calls for a in self._actors.values()):
                    break
                self._resend_probes()
                refs = list(self._refs)
            ready: list[Any] = []
            if refs:
                ready, _ = ray.wait(refs, num_returns=1, timeout=poll)
                if ready and len(refs) > 1:
                    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            else:
                self._wake.wait(poll * 10)
            self._wake.clear()
            outcomes = [(ref, _fetch(ref)) for ref in ready]
            with self._lock:
                for ref, outcome in outcomes:
                    actor = self._refs.pop(ref, None)
                    if actor is None or actor.id not in self._actors:
                        continue  # an actor we removed meanwhile
                    if actor.probe is not None and ref == actor.probe:
                        actor.probe = None
                        self._on_probe(actor, outcome)
                    elif ref in actor.calls:
                        self._on_call(actor, actor.calls.pop(ref), outcome)
                if not self._closing:
                    self._dispatch()
                outcomes = self._ledger.take_settled()
            settle(outcomes)

    def _resend_probes(self) -> None:
        now = time.monotonic()
        for actor in self._actors.values():
            if not actor.ready and actor.probe is None and actor.probe_at and now >= actor.probe_at:
                actor.probe_at = 0.0
                self._send_probe(actor)

    def _on_probe(self, actor: _Actor, outcome: Any) -> None:
        group = self._groups[actor.group]
        if isinstance(outcome, ActorUnavailableError):
            actor.probe_at = time.monotonic() + _PROBE_RETRY_S  # restarting: ask again soon
            return
        if isinstance(outcome, BaseException):  # dead for good before it was ready
            self._on_gone(actor, f"{type(outcome).__name__}: {outcome}", loading=True)
            return
        info: ActorInfo = outcome
        if info.load_error is not None:
            log.error(
                "actor %s on %s could not load the model: %s",
                actor.name,
                info.node_label,
                info.load_error,
            )
            group.load_error = info.load_error  # a load error is not transient: stop starting
            self._remove(actor)
            self._check_usable()
            return
        actor.info, actor.ready = info, True
        group.load_failures = 0
        self._model_loads += 1
        self._ready.set()
        self._emit_for(actor, "worker_ready", worker=actor.id, load_s=info.load_s)
        if actor.retiring and not actor.calls:
            self._remove(actor)

    def _on_call(self, actor: _Actor, task_ids: list[int], outcome: Any) -> None:
        placement = actor.placement
        counts = self._counts.setdefault(placement, _Counts())
        if isinstance(outcome, RayActorError):
            self._on_death(actor, task_ids, outcome)
            return
        if isinstance(outcome, BaseException):  # the call itself failed (not the engine)
            outcome = ("error", f"{type(outcome).__name__}: {outcome}")
        kind = outcome[0]
        if kind == "done":
            _, results, seconds = outcome
            for task_id, result in zip(task_ids, results, strict=True):
                entry = self._ledger.resolve(task_id, result)
                counts.done += 1
                if entry is not None:
                    self._emit_for(
                        actor,
                        "chunk_done",
                        group=entry.task.group,
                        index=entry.task.index,
                        audio_s=entry.task.duration_s,
                        seconds=seconds / max(1, len(task_ids)),
                    )
        elif kind == "oom":
            self._on_oom(actor, task_ids, outcome[1])
        else:
            log.warning(
                "actor %s on %s failed a batch of %d: %s",
                actor.name,
                placement,
                len(task_ids),
                outcome[1],
            )
            for task_id in task_ids:
                # A failed batch of several is retried one chunk at a time (below, by attempts).
                self._failed_attempt(task_id, actor, outcome[1], count=len(task_ids) == 1)
        if actor.retiring and not actor.calls:
            self._remove(actor)

    def _on_death(self, actor: _Actor, task_ids: list[int], error: RayActorError) -> None:
        """An actor died (or became unreachable) with ``task_ids`` in flight, maybe more."""
        placement = actor.placement
        text = f"actor died on {placement} ({type(error).__name__})"
        # Batches run one after another: the oldest was running and counts an attempt; those
        # queued behind it never started and go back without one.
        queued = list(actor.calls.values())
        for ref in actor.calls:
            self._refs.pop(ref, None)
        actor.calls.clear()
        if actor.retiring or self._closing:
            for ids in [task_ids, *queued]:
                for task_id in ids:
                    self._requeue(task_id)
            self._remove(actor)
            return
        self._deaths += 1
        log.warning(
            "actor %s on %s died; requeueing %d chunk(s)",
            actor.name,
            placement,
            len(task_ids) + sum(len(ids) for ids in queued),
        )
        self._emit_for(actor, "worker_died", worker=actor.id, error=str(error)[:200])
        for task_id in task_ids:
            self._failed_attempt(task_id, actor, text)
        for ids in queued:
            for task_id in ids:
                self._requeue(task_id)
        actor.ready, actor.info = False, None
        actor.worker_id = next(self._worker_ids)  # a restarted actor is a new worker
        if isinstance(error, ActorDiedError):
            self._on_gone(actor, text, loading=False)  # no restart left, or killed for good
        elif actor.probe is None:
            self._send_probe(actor)  # restarting: ready again when describe() answers

    def _on_gone(self, actor: _Actor, text: str, loading: bool) -> None:
        """An actor is dead for good: start a fresh one in its place, within limits.

        ``loading``: it died before its model was loaded (counts towards giving the device up).
        """
        group = self._groups[actor.group]
        for ids in actor.calls.values():
            for task_id in ids:
                self._requeue(task_id)
        self._remove(actor)
        if actor.retiring or self._closing:
            return
        if loading:
            group.load_failures += 1
            log.warning(
                "actor %s for %s died before it was ready (%s)", actor.name, actor.group, text
            )
            if group.load_failures >= MAX_LOAD_FAILURES and group.load_error is None:
                group.load_error = f"actors for {actor.group} die while loading the model ({text})"
        if group.load_error is None:
            self._fit_actors(actor.group)
        self._check_usable()

    def _check_usable(self) -> None:
        if all(g.load_error is not None for g in self._groups.values()):
            reasons = "; ".join(f"{k}: {g.load_error}" for k, g in self._groups.items())
            self._break(f"no Ray actor can load the model: {reasons}")

    def _on_oom(self, actor: _Actor, task_ids: list[int], text: str) -> None:
        group = self._groups[actor.group]
        self._counts.setdefault(actor.placement, _Counts()).oom_events += 1
        decision = shrink_after_oom(max(1, group.slots), group.batch_size)
        log.warning("out of memory on %s (%s): %s", actor.placement, text, decision.reason)
        self._emit_for(
            actor,
            "oom",
            action=decision.action.value,
            slots=decision.slots,
            batch_size=decision.batch_size,
        )
        if decision.action is OomAction.GIVE_UP:
            group.slots = 0
            actor.retiring = True
            for task_id in task_ids:
                self._failed_attempt(task_id, actor, f"out of memory on {actor.placement}")
            if all(g.slots == 0 for g in self._groups.values()):
                # Nothing is left to run the requeued chunks: fail them rather than wait forever.
                self._break(f"every device ran out of memory: {decision.reason}")
            return
        group.slots, group.batch_size = decision.slots, decision.batch_size
        for task_id in task_ids:
            self._requeue(task_id)
        if decision.action is OomAction.DROP_SLOT:
            actor.retiring = True

    def _failed_attempt(self, task_id: int, actor: _Actor, text: str, count: bool = True) -> None:
        if self._ledger.failed_attempt(task_id, actor.worker_id, text, count) and count:
            self._counts.setdefault(actor.placement, _Counts()).failures += 1

    def _requeue(self, task_id: int) -> None:
        self._ledger.requeue(task_id)

    def _dispatch(self) -> None:
        actors = [a for a in self._actors.values() if a.ready and not a.retiring]
        live = [a.worker_id for a in actors]
        progress = True
        while progress and self._ledger.queued:
            progress = False
            # One batch per actor per round, emptiest first: no actor hoards while others idle.
            for actor in sorted(actors, key=lambda a: a.in_flight):
                group = self._groups[actor.group]
                room = (self._options.max_in_flight or group.batch_size) - actor.in_flight
                if room < 1:
                    continue
                n = min(group.batch_size, room)
                batch = self._ledger.take(actor.worker_id, n, live)
                if not batch:
                    continue
                task_ids = [task_id for task_id, _ in batch]
                entries = [entry for _, entry in batch]
                ref = actor.handle.transcribe.remote(
                    [e.task.audio for e in entries],
                    entries[0].task.options,
                    [e.task.tag for e in entries],
                )
                actor.calls[ref] = task_ids
                self._refs[ref] = actor
                progress = True

    def _emit_for(self, actor: _Actor, kind: str, **data: Any) -> None:
        """An event as WorkerPool emits it (``device``: the plan device), plus where it ran."""
        node = actor.info.node_id if actor.info is not None else None
        self._emit(kind, device=actor.group, placement=actor.placement, node=node, **data)


def _fetch(ref: Any) -> Any:
    """The value behind a ready ObjectRef, or the exception Ray raised for it."""
    try:
        return ray.get(ref)
    except RayError as exc:
        return exc


def _kill(handle: Any) -> None:
    with contextlib.suppress(RayError, ValueError):
        ray.kill(handle, no_restart=True)


# -- the cluster view --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeView:
    """One Ray node: its resources, its own capacity plan, and the pool actors running on it."""

    node_id: str
    address: str
    alive: bool
    cpus: float  # as Ray counts them on this node
    gpus: float
    resources: Mapping[str, float]  # custom resources (and accelerator_type:...)
    plan: CapacityPlan | None  # planned on the node itself; None when not asked or no answer
    actors: tuple[ActorInfo, ...] = ()

    @property
    def label(self) -> str:
        return node_label(self.address, self.node_id)

    @property
    def slots(self) -> int:
        return self.plan.max_concurrent if self.plan is not None else 0

    @property
    def active(self) -> int:
        return sum(a.active for a in self.actors)

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "address": self.address,
            "label": self.label,
            "alive": self.alive,
            "cpus": self.cpus,
            "gpus": self.gpus,
            "resources": dict(self.resources),
            "slots": self.slots,
            "active": self.active,
            "plan": self.plan.to_json() if self.plan is not None else None,
            "actors": [a.to_json() for a in self.actors],
        }


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    """Every node of the cluster, for ``whisper-subs devices --backend ray`` and /status."""

    nodes: tuple[NodeView, ...]

    @property
    def max_concurrent(self) -> int:
        return sum(n.slots for n in self.nodes if n.alive)

    @property
    def active(self) -> int:
        return sum(n.active for n in self.nodes)

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": [n.to_json() for n in self.nodes],
            "max_concurrent": self.max_concurrent,
            "active": self.active,
        }


_BUILTIN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


@dataclass(frozen=True, slots=True)
class _PlanRequest:
    model: str
    compute_type: str
    batch_size: int
    options: CapacityOptions
    use_gpus: bool
    fake_gpus: str | None


def _plan_here(request: _PlanRequest) -> CapacityPlan:
    """The capacity plan of the node this runs on (a Ray task pinned to it)."""
    from .devices import cpu_count, discover_gpus, system_memory

    gpus = discover_gpus(request.fake_gpus) if request.use_gpus else []
    compute_type = compute_type_for("cuda" if gpus else "cpu", request.compute_type)
    return plan_capacity(
        gpus,
        request.model,
        compute_type,
        request.batch_size,
        request.options,
        cpu_count(),
        memory=system_memory(),
    )


def cluster_plan(
    model: str | None = "base",
    compute_type: str = "auto",
    batch_size: int = 4,
    options: CapacityOptions | None = None,
    *,
    use_gpus: bool = True,
    fake_gpus: str | None = None,
    address: str | None = None,
    timeout_s: float = 30.0,
) -> ClusterPlan:
    """Nodes, GPUs, slots and active chunks across the cluster.

    Each alive node plans its own capacity for ``model`` (its GPUs' free memory through NVML,
    its cores and RAM), in a small Ray task pinned to it; ``model=None`` skips that. The actors
    of every RayPool in the cluster (any process) are listed under their node with the chunks
    they are transcribing now. Connects with ``address`` when this process is not connected.
    """
    connect(address)
    nodes = list(ray.nodes())
    plans: dict[str, CapacityPlan] = {}
    if model is not None:
        request = _PlanRequest(
            model, compute_type, batch_size, options or CapacityOptions(), use_gpus, fake_gpus
        )
        plans = _plan_nodes([n["NodeID"] for n in nodes if n["Alive"]], request, timeout_s)
    actors = _live_actors(timeout_s=min(timeout_s, 5.0))
    views = []
    for n in sorted(nodes, key=lambda n: (not n["Alive"], n["NodeManagerAddress"], n["NodeID"])):
        total = n.get("Resources", {})
        node_id = n["NodeID"]
        views.append(
            NodeView(
                node_id=node_id,
                address=n["NodeManagerAddress"],
                alive=bool(n["Alive"]),
                cpus=float(total.get("CPU", 0)),
                gpus=float(total.get("GPU", 0)),
                resources={
                    k: float(v)
                    for k, v in total.items()
                    if k not in _BUILTIN_RESOURCES and not k.startswith("node:")
                },
                plan=plans.get(node_id),
                actors=tuple(a for a in actors if a.node_id == node_id),
            )
        )
    return ClusterPlan(tuple(views))


def _plan_nodes(node_ids: list[str], request: _PlanRequest, timeout_s: float) -> dict[str, Any]:
    task = ray.remote(num_cpus=0, max_retries=0)(_plan_here)
    refs = {
        task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
            request
        ): node
        for node in node_ids
    }
    ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    plans = {}
    for ref in ready:
        outcome = _fetch(ref)
        if isinstance(outcome, BaseException):
            log.warning("node %s could not plan its capacity: %s", refs[ref], outcome)
        else:
            plans[refs[ref]] = outcome
    for ref in late:
        log.warning("node %s did not plan its capacity within %.0f s", refs[ref], timeout_s)
        ray.cancel(ref, force=True)
    return plans


def _live_actors(timeout_s: float) -> list[ActorInfo]:
    """ActorInfo of every whisper-subs actor in the cluster that answers within ``timeout_s``."""
    names = [
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["namespace"] == NAMESPACE and entry["name"].startswith(ACTOR_PREFIX)
    ]
    refs = []
    for name in names:
        with contextlib.suppress(ValueError, RayError):
            refs.append(ray.get_actor(name, namespace=NAMESPACE).describe.remote())
    if not refs:
        return []
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    infos = [_fetch(ref) for ref in ready]
    return sorted((i for i in infos if isinstance(i, ActorInfo)), key=lambda i: i.name)


def format_cluster(plan: ClusterPlan) -> str:
    """The cluster as text: one block per node, its devices' slots and its actors."""
    lines = []
    for node in plan.nodes:
        extra = ", ".join(f"{k}={v:g}" for k, v in sorted(node.resources.items()))
        state = "" if node.alive else "  DEAD"
        lines.append(
            f"node {node.label}: {node.cpus:g} CPU, {node.gpus:g} GPU"
            f"{', ' + extra if extra else ''}{state}"
        )
        if node.plan is not None:
            lines.extend("  " + line for line in format_plan(node.plan).splitlines()[1:])
        for actor in node.actors:
            where = actor.placement.split("/", 1)[1]
            lines.append(
                f"  actor {actor.name} ({actor.plan_device}) on {where}: "
                f"{actor.active} active, {actor.done} done, pid {actor.pid}"
            )
    lines.append(
        f"cluster: {sum(n.alive for n in plan.nodes)} node(s) alive, "
        f"{plan.max_concurrent} slot(s), {plan.active} chunk(s) active"
    )
    return "\n".join(lines)


def plan_cluster_workers(
    model: ResolvedModel,
    options: WorkerOptions,
    fake: FakeBehaviour | None = None,
    *,
    address: str | None = None,
    gpu_actor_cpus: float = 1.0,
) -> tuple[ClusterPlan, list[DeviceSlots], RayOptions]:
    """``workers.plan_workers`` across a cluster: each node plans its own devices.

    Returns the cluster view, one DeviceSlots per node and device (``"<node>/cuda:0"``,
    ``"<node>/cpu"``), and RayOptions that pin those actors to their node (softly: a restart
    after the node died goes elsewhere) and resolve ``model.name`` on nodes that lack the head's
    model folder. Slots are capped by what Ray may hand out on the node: its GPU count, and its
    CPU count (CPU actors reserve their threads, GPU actors ``gpu_actor_cpus`` each).
    """
    capacity = CapacityOptions(
        margin=options.margin,
        min_slots=options.min_slots,
        max_slots=options.max_slots,
        cpu_threads=options.threads,
    )
    cluster = cluster_plan(
        model.name,
        options.compute_type,
        batch_size_for("cuda" if options.device != "cpu" else "cpu", options.batch_size),
        capacity,
        use_gpus=options.device != "cpu",
        fake_gpus=options.fake_gpus,
        address=address,
    )
    slots: list[DeviceSlots] = []
    affinity: dict[str, str] = {}
    for node in cluster.nodes:
        if not node.alive or node.plan is None:
            continue
        # Ray may have been given fewer GPUs on this node than NVML sees: use that many.
        gpus = [d for d in node.plan.devices if d.kind == "cuda" and d.slots > 0][: int(node.gpus)]
        # Each GPU actor reserves gpu_actor_cpus of the node's CPUs: plan no more than fit.
        per_gpu = (
            math.floor(node.cpus / gpu_actor_cpus / len(gpus))
            if gpus and gpu_actor_cpus > 0
            else None
        )
        for device in node.plan.devices:
            count = options.workers or device.slots
            if device.kind == "cuda":
                if device not in gpus:
                    continue
                count = count if per_gpu is None else min(count, per_gpu)
            else:
                count = min(count, int(node.cpus // max(1, device.threads)))
            engine, env = engine_for(device, model, options, fake)
            if count < 1:
                continue
            device_id = f"{node.label}/{device.id}"
            batch = batch_size_for(device.kind, options.batch_size)
            slots.append(DeviceSlots(device_id, count, engine, env, batch))
            affinity[device_id] = node.node_id
    if not slots:
        reasons = "; ".join(
            f"{n.label}: "
            + (", ".join(f"{d.id} {d.reason}" for d in n.plan.devices) if n.plan else "no answer")
            for n in cluster.nodes
            if n.alive
        )
        raise DeviceError(
            f"no node of the Ray cluster has room for one {model.name} worker "
            f"({reasons or 'no node alive'})"
        )
    return (
        cluster,
        slots,
        RayOptions(
            address=address,
            gpu_actor_cpus=gpu_actor_cpus,
            node_affinity=affinity,
            model_name=model.name,
        ),
    )
