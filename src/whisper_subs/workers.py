"""From the user's device options to the pool's DeviceSlots, through the capacity plan."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from .capacity import CapacityOptions, CapacityPlan, ensure_usable, plan_capacity
from .devices import (
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
    batch_size: int = 4  # chunks per engine call
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
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")


def compute_type_for(kind: str, requested: str) -> str:
    if requested != "auto":
        return requested
    return "float16" if kind == "cuda" else "int8"


def plan_workers(
    model: ResolvedModel, options: WorkerOptions, fake: FakeBehaviour | None = None
) -> tuple[CapacityPlan, list[DeviceSlots]]:
    """The capacity plan for ``options`` and the pool's slots that follow from it."""
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
        options.batch_size,
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
    ensure_usable(plan)
    slots = []
    by_id = {g.id: g for g in selected.gpus}
    for device in plan.devices:
        if device.slots < 1:
            continue
        if device.kind == "cuda":
            engine = EngineSpec(
                model.location, "cuda", compute_type_for("cuda", options.compute_type), fake=fake
            )
            env = cuda_env(by_id[device.id])
        else:
            engine = EngineSpec(
                model.location,
                "cpu",
                compute_type_for("cpu", options.compute_type),
                cpu_threads=device.threads,
                fake=fake,
            )
            env = {"OMP_NUM_THREADS": str(device.threads)}
        slots.append(DeviceSlots(device.id, device.slots, engine, env, options.batch_size))
    return plan, slots


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
