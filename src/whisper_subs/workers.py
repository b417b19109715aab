"""From the user's device options to the pool's DeviceSlots, through the capacity plan."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

from .capacity import CapacityOptions, CapacityPlan, DevicePlan, ensure_usable, plan_capacity
from .devices import (
    GpuInfo,
    cpu_count,
    cuda_env,
    discover_gpus,
    parse_device_list,
    select_devices,
    system_memory,
)
from .engine import EngineSpec, FakeBehaviour
from .errors import UsageError
from .models import ResolvedModel
from .pool import DeviceSlots

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Where workers run. Read from the CLI/settings once, then passed down."""

    device: str = "auto"  # auto | cpu | cuda
    devices: str | None = None  # "0,1", "cuda:0,1", "auto": which GPUs (None: every one)
    workers: int | None = None  # workers per device; None: from the capacity plan
    threads: int | None = None  # CPU threads per worker; None: from the core count
    compute_type: str = "auto"  # auto: int8 on CPU, float16 on GPU
    batch_size: int | None = None  # chunks per engine call; None: 2 on CPU, 8 on GPU
    margin: float = 0.2  # share of free GPU memory left unused
    min_slots: int = 1
    max_slots: int = 8
    fake_gpus: str | None = None  # WHISPER_SUBS_FAKE_GPUS, read by the caller

    def __post_init__(self) -> None:
        if self.device not in DEVICE_CHOICES:
            raise UsageError(
                f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {self.device!r}"
            )
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {self.threads}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")


# Measured on 2 CPU cores (base int8, LJSpeech chapter, 2 workers): batch 2 was fastest,
# 1 and 4 were 9% and 16% slower (a big batch leaves the other worker idle at the end). GPUs
# gain from larger batches.
DEFAULT_BATCH = {"cpu": 2, "cuda": 8}


def batch_size_for(kind: str, requested: int | None) -> int:
    return requested if requested is not None else DEFAULT_BATCH.get(kind, 2)


def compute_type_for(kind: str, requested: str) -> str:
    if requested != "auto":
        return requested
    return "float16" if kind == "cuda" else "int8"


def plan_workers(
    model: ResolvedModel, options: WorkerOptions, fake: FakeBehaviour | None = None
) -> tuple[CapacityPlan, list[DeviceSlots]]:
    """The capacity plan for ``options`` and the pool's slots that follow from it."""
    plan, slots, _ = plan_run(model, options, fake=fake)
    return plan, slots


def plan_run(
    model: ResolvedModel,
    options: WorkerOptions,
    duration_s: float | None = None,
    multi_device_min_s: float = 0.0,
    fake: FakeBehaviour | None = None,
) -> tuple[CapacityPlan, list[DeviceSlots], str]:
    """Like plan_workers, sized for ``duration_s`` of audio (see size_for_input), with why."""
    gpus = [] if options.device == "cpu" else discover_gpus(options.fake_gpus)
    if options.device == "cpu":
        selection = parse_device_list("cpu")
    elif options.devices:
        selection = parse_device_list(options.devices)
    else:
        selection = parse_device_list("cuda" if options.device == "cuda" else "auto")
    selected = select_devices(selection, gpus)
    kind = "cuda" if selected.gpus else "cpu"
    compute_type = compute_type_for(kind, options.compute_type)
    plan = plan_capacity(
        list(selected.gpus),
        model.name,
        compute_type,
        batch_size_for(kind, options.batch_size),
        CapacityOptions(
            margin=options.margin,
            min_slots=options.min_slots,
            max_slots=options.max_slots,
            cpu=True if selected.cpu and selected.gpus else None,
            cpu_threads=options.threads,
        ),
        cpu_count(),
        memory=system_memory(),
    )
    if options.workers is not None:
        plan = _override_workers(plan, options.workers, options.threads)
        reason = f"{plan.max_concurrent} worker(s): --workers {options.workers}"
    else:
        plan, reason = size_for_input(plan, duration_s, multi_device_min_s, cpu_count())
    ensure_usable(plan)
    return plan, slots_for_plan(plan, model, options, list(selected.gpus), fake), reason


def engine_for(
    device: DevicePlan,
    model: ResolvedModel,
    options: WorkerOptions,
    fake: FakeBehaviour | None = None,
) -> tuple[EngineSpec, dict[str, str]]:
    """The engine recipe for a worker on ``device``, and the CPU environment it needs.

    A GPU worker's ``CUDA_VISIBLE_DEVICES`` is the caller's to add: the local pool pins a UUID
    (devices.cuda_env), Ray assigns GPUs itself.
    """
    compute_type = compute_type_for(device.kind, options.compute_type)
    if device.kind == "cuda":
        return EngineSpec(model.location, "cuda", compute_type, fake=fake), {}
    engine = EngineSpec(model.location, "cpu", compute_type, cpu_threads=device.threads, fake=fake)
    return engine, {"OMP_NUM_THREADS": str(device.threads)}


def slots_for_plan(
    plan: CapacityPlan,
    model: ResolvedModel,
    options: WorkerOptions,
    gpus: list[GpuInfo],
    fake: FakeBehaviour | None = None,
) -> list[DeviceSlots]:
    """The pool's DeviceSlots for each device of ``plan`` that has slots."""
    slots = []
    by_id = {g.id: g for g in gpus}
    for device in plan.devices:
        if device.slots < 1:
            continue
        engine, env = engine_for(device, model, options, fake)
        if device.kind == "cuda":
            env = cuda_env(by_id[device.id])
        batch = batch_size_for(device.kind, options.batch_size)
        slots.append(DeviceSlots(device.id, device.slots, engine, env, batch))
    return slots


def _override_workers(plan: CapacityPlan, workers: int, threads: int | None) -> CapacityPlan:
    cores = cpu_count()
    devices = []
    for device in plan.devices:
        if device.kind == "cpu":
            per = threads or max(1, cores // workers)
            device = replace(
                device, slots=workers, threads=per, reason=f"--workers {workers} x {per} thread(s)"
            )
        elif device.slots:
            device = replace(
                device, slots=workers, reason=f"--workers {workers} (plan: {device.slots})"
            )
        devices.append(device)
    return replace(plan, devices=tuple(devices))


def size_for_input(
    plan: CapacityPlan, duration_s: float | None, multi_device_min_s: float, cpu_cores: int
) -> tuple[CapacityPlan, str]:
    """Shrink the plan for a short run, where more workers would cost more than they save.

    Each worker loads its own model copy (seconds on a GPU, and on a CPU the loads compete for
    the same cores) and a chunk is ~27 s of audio. Under ``multi_device_min_s`` of audio the run
    uses one device, and at most one worker per two chunks on it; a CPU worker then gets the
    cores the others would have had. Returns the plan and the reason, for the summary.
    """
    if duration_s is None or duration_s >= multi_device_min_s or plan.max_concurrent <= 1:
        return plan, f"{plan.max_concurrent} worker(s): the full plan"
    chunks = max(1, math.ceil(duration_s / 27.0))
    used = [d for d in plan.devices if d.slots > 0]
    first = max(used, key=lambda d: (d.kind == "cuda", d.slots))
    workers = max(1, min(first.slots, chunks // 2))
    devices = []
    for device in plan.devices:
        if device is not first:
            devices.append(replace(device, slots=0, reason="not used for a short run"))
        elif device.kind == "cpu":
            threads = max(device.threads, cpu_cores // workers)
            devices.append(replace(device, slots=workers, threads=threads))
        else:
            devices.append(replace(device, slots=workers))
    reason = (
        f"{workers} worker(s) on {first.id}: {duration_s:.0f} s of audio (under "
        f"{multi_device_min_s:.0f} s, about {chunks} chunk(s)) does not pay for more model loads"
    )
    return replace(plan, devices=tuple(devices)), reason
