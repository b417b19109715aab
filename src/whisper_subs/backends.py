"""Which pool runs the chunks: local worker processes or Ray actors, behind one interface.

The runner, the CLI and ``bench --simulate`` take a ``Pool`` from ``make_pool`` and never learn
which back end they have. ``ray_pool`` (and with it Ray) is imported only when the Ray back end is
asked for, so nothing else in the package imports Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from .errors import UsageError
from .pool import ChunkTask, DeviceSlots, PoolStatus, WorkerPool
from .types import ChunkResult

if TYPE_CHECKING:
    from .engine import FakeBehaviour
    from .models import ResolvedModel
    from .workers import WorkerOptions

BACKENDS = ("local", "ray")
RAY_HINT = "pip install 'whisper-subs[ray]' (plain ray) on the head and on every worker node"


class Pool(Protocol):
    """What the runner needs from a pool; WorkerPool and RayPool both provide it."""

    def submit(self, task: ChunkTask) -> Future[ChunkResult]: ...
    def cancel_group(self, group: str) -> int: ...
    def status(self) -> PoolStatus: ...
    def wait_ready(self, timeout: float | None = None) -> bool: ...
    @property
    def ready(self) -> bool: ...
    def set_slots(self, device_id: str, slots: int) -> None: ...
    def close(self, timeout: float = 10.0) -> None: ...
    def __enter__(self) -> Pool: ...
    def __exit__(self, *exc: object) -> None: ...


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def _ray_pool_module() -> Any:
    try:
        from . import ray_pool
    except ImportError as exc:
        raise UsageError(f"the Ray back end needs Ray: {RAY_HINT} ({exc})") from exc
    return ray_pool


def make_pool(
    backend: str,
    slots: Sequence[DeviceSlots],
    ray_address: str | None = None,
    **kw: Any,
) -> Pool:
    """A started pool of ``backend`` over ``slots``.

    ``kw`` goes to the pool: ``max_attempts``, ``on_event``, and for Ray ``options``
    (``ray_pool.RayOptions``, e.g. from ``PoolPlan.pool_kwargs``). ``ray_address`` (``auto``,
    ``ray://host:10001``, ``host:6379``; None: RAY_ADDRESS or a local instance) overrides
    ``options.address``; it is an error with the local back end.
    """
    check_backend(backend)
    if backend == "local":
        if ray_address is not None:
            raise UsageError("--ray-address needs --backend ray")
        return WorkerPool(slots, **kw)
    ray_pool = _ray_pool_module()
    options = kw.pop("options", None) or ray_pool.RayOptions()
    if ray_address is not None:
        options = replace(options, address=ray_address)
    return ray_pool.RayPool(slots, options=options, **kw)


@dataclass(frozen=True, slots=True)
class PoolPlan:
    """Where the workers of one run go: the slots, the plan as data and text, pool kwargs."""

    slots: tuple[DeviceSlots, ...]
    plan_json: dict[str, Any]
    text: str
    pool_kwargs: dict[str, Any] = field(default_factory=dict)  # for make_pool(**pool_kwargs)


def plan_pool(
    backend: str,
    model: ResolvedModel,
    options: WorkerOptions,
    ray_address: str | None = None,
    fake: FakeBehaviour | None = None,
) -> PoolPlan:
    """The capacity plan for ``backend``: this machine's devices, or every node of the cluster.

    On Ray each node plans its own GPUs and cores (``ray_pool.plan_cluster_workers``) and the
    returned ``pool_kwargs`` pin those actors to their node.
    """
    check_backend(backend)
    if backend == "local":
        from .capacity import format_plan
        from .workers import plan_workers

        plan, slots = plan_workers(model, options, fake)
        return PoolPlan(tuple(slots), plan.to_json(), format_plan(plan))
    ray_pool = _ray_pool_module()
    cluster, slots, ray_options = ray_pool.plan_cluster_workers(
        model, options, fake, address=ray_address
    )
    return PoolPlan(
        tuple(slots),
        cluster.to_json(),
        ray_pool.format_cluster(cluster),
        {"options": ray_options},
    )


def describe_devices(
    backend: str,
    model: str,
    compute_type: str = "auto",
    batch_size: int = 4,
    margin: float = 0.2,
    *,
    ray_address: str | None = None,
    fake_gpus: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """``whisper-subs devices``: the plan as text and as JSON, for this machine or the cluster.

    With Ray: every node, its GPUs and slots, and the actors of running pools with their active
    chunks.
    """
    check_backend(backend)
    from .capacity import CapacityOptions

    if backend == "local":
        from .capacity import format_plan, plan_capacity
        from .devices import cpu_count, discover_gpus, system_memory
        from .workers import compute_type_for

        gpus = discover_gpus(fake_gpus)
        ct = compute_type_for("cuda" if gpus else "cpu", compute_type)
        plan = plan_capacity(gpus, model, ct, batch_size, CapacityOptions(margin=margin),
                             cpu_count(), memory=system_memory())  # fmt: skip
        return format_plan(plan), plan.to_json()
    ray_pool = _ray_pool_module()
    cluster = ray_pool.cluster_plan(
        model, compute_type, batch_size, CapacityOptions(margin=margin),
        fake_gpus=fake_gpus, address=ray_address,
    )  # fmt: skip
    return ray_pool.format_cluster(cluster), cluster.to_json()
