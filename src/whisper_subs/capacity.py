"""The capacity plan: how many workers each device can hold, as plain data.

One worker is one process with one copy of the model. For a GPU, the plan takes its free
memory, keeps a safety margin, and divides by what one worker needs for the model, compute type
and batch size; the count is then bounded by a floor and a cap. For the CPU it spreads the cores
over workers and checks the RAM. The API and the CLI show the plan; the pool re-plans a device
from fresh free-memory readings (``replan_device``) and backs off after running out of memory
(``shrink_after_oom``). Nothing here touches a device, a process or the environment.

All memory figures are MiB (what nvidia-smi and the faster-whisper benchmarks call MB).

Where the need figures come from: ``MEMORY_NEED_MB`` (GPU memory) and ``CPU_MEMORY_NEED_MB``
(RAM) give, per (model, compute type), one worker's peak at batch size 1 and the increment per
extra batch item, each with its source. Published peaks (faster-whisper's README benchmark and
SYSTRAN/faster-whisper#1030, both beam size 5) are used where they exist; the rest comes from
``estimate_need``, a formula fitted to those same figures. A measured figure (``measured``,
see ``load_measurements``) overrides both.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from .devices import GpuInfo, SystemMemory
from .errors import DeviceError, UsageError

log = logging.getLogger(__name__)

DeviceKind = Literal["cuda", "cpu"]

# --- models ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelSpec:
    params_m: float  # millions of parameters
    d_model: int  # width of the transformer; activations per batch item scale with it


# Parameters: openai/whisper README (tiny 39M, base 74M, small 244M, medium 769M, large 1550M,
# turbo 809M) and the distil-whisper model cards (distil-large-v2/v3 756M, distil-medium.en
# 394M, distil-small.en 166M). Width: Whisper paper, table 1.
MODEL_SPECS: Mapping[str, ModelSpec] = MappingProxyType(
    {
        "tiny": ModelSpec(39, 384),
        "base": ModelSpec(74, 512),
        "small": ModelSpec(244, 768),
        "medium": ModelSpec(769, 1024),
        "large-v1": ModelSpec(1550, 1280),
        "large-v2": ModelSpec(1550, 1280),
        "large-v3": ModelSpec(1550, 1280),
        "turbo": ModelSpec(809, 1280),
        "distil-large-v2": ModelSpec(756, 1280),
        "distil-large-v3": ModelSpec(756, 1280),
        "distil-large-v3.5": ModelSpec(756, 1280),
        "distil-medium.en": ModelSpec(394, 1024),
        "distil-small.en": ModelSpec(166, 768),
    }
)
# faster-whisper's hub names that are the same weights size as another entry.
MODEL_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "large": "large-v3",  # faster_whisper.utils._MODELS maps "large" to large-v3
        "large-v3-turbo": "turbo",
        "tiny.en": "tiny",
        "base.en": "base",
        "small.en": "small",
        "medium.en": "medium",
    }
)
# When a name is neither of the above (a hub repo id, a local folder): guess from the words in
# it, most specific first; with no match and no parameter count, assume large (the safe side).
_NAME_GUESSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("distil-large-v3", ("distil", "large-v3")),
    ("distil-large-v2", ("distil", "large-v2")),
    ("distil-medium.en", ("distil", "medium")),
    ("distil-small.en", ("distil", "small")),
    ("turbo", ("turbo",)),
    ("large-v3", ("large-v3",)),
    ("large-v2", ("large-v2",)),
    ("large-v1", ("large-v1",)),
    ("large-v3", ("large",)),
    ("medium", ("medium",)),
    ("small", ("small",)),
    ("base", ("base",)),
    ("tiny", ("tiny",)),
)
_FALLBACK_MODEL = "large-v3"


def canonical_model(model: str) -> str | None:
    """The ``MODEL_SPECS`` key for a hub name or alias; None for anything else."""
    name = model.strip().lower()
    name = MODEL_ALIASES.get(name, name)
    return name if name in MODEL_SPECS else None


# --- compute types --------------------------------------------------------------------------

# (bytes per weight, bytes per activation value) for each CTranslate2 compute type.
_BYTES: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "float32": (4, 4),
        "float16": (2, 2),
        "int8_float16": (1, 2),
        "int8_float32": (1, 4),
        "int16": (2, 4),
    }
)


def normalize_compute_type(compute_type: str, kind: DeviceKind) -> str:
    """The compute type CTranslate2 actually runs on ``kind``, as a key of the need tables.

    ``default`` keeps the weights' saved type (float16 for the Systran conversions; the CPU
    cannot do float16 and falls back to float32). ``auto`` is taken as int8_float16 on CUDA and
    int8 on the CPU, what CTranslate2 picks on current hardware. bfloat16 costs what float16
    costs. On the CPU the float16 types fall back to float32 and the int8_* types to int8.
    ``int8`` on CUDA is kept apart from int8_float16 only to name it; it costs the same (since
    CTranslate2 3.18, int8 keeps the non-quantized weights of a float16 model in float16).
    """
    name = compute_type.strip().lower()
    name = {"float": "float32", "bfloat16": "float16", "int8_bfloat16": "int8_float16"}.get(
        name, name
    )
    if name == "default":
        name = "float16" if kind == "cuda" else "float32"
    elif name == "auto":
        name = "int8_float16" if kind == "cuda" else "int8"
    if kind == "cpu":
        name = {"float16": "float32", "int8_float16": "int8", "int8_float32": "int8"}.get(
            name, name
        )
    elif name == "int16":
        raise UsageError(
            "compute type 'int16' does not run on CUDA; use float16, int8_float16 or int8"
        )
    if name != "int8" and name not in _BYTES:
        known = "auto, default, float32, float16, bfloat16, int8, int8_float16, int8_float32, "
        raise UsageError(f"unknown compute type {compute_type!r}; use one of {known}int16 (CPU)")
    return name


def _bytes(compute_type: str, kind: DeviceKind) -> tuple[int, int]:
    if compute_type == "int8":
        return (1, 2) if kind == "cuda" else (1, 4)  # CPU activations stay float32
    return _BYTES[compute_type]


# --- the formula ----------------------------------------------------------------------------

# Fitted to the published GPU peaks (large-v2/v3, turbo, distil-large-v3 at float16 and int8):
# base = GPU_FIXED_MB + params x (bytes per weight + OVERHEAD_MB_PER_MPARAM x activation bytes / 2)
# reproduces each within 12 % (float16 within 4 %; int8 on the high side). The fixed part is the
# CUDA context, cuBLAS workspace and allocator slack; the overhead part is activations and the
# beam-search state, which grow with the model.
GPU_FIXED_MB = 400
OVERHEAD_MB_PER_MPARAM = 0.65
# The CPU figures (RAM, so the whole Python process: interpreter, libraries, decoded audio)
# have one published model, small: fp32 2257MB and int8 1477MB give 964 and 916 MB fixed with the
# same overhead term; 940 is their mean.
CPU_FIXED_MB = 940
# Per extra batch item, scaled by width x activation bytes from the published increments:
# GPU large-v2 fp16 224MB per item at width 1280 and 2 bytes; CPU small 282/304MB at 768 and 4.
PER_ITEM_MB_PER_WIDTH_BYTE: Mapping[str, float] = MappingProxyType(
    {"cuda": 224 / (1280 * 2), "cpu": 293 / (768 * 4)}
)


@dataclass(frozen=True, slots=True)
class MemoryEntry:
    """What one worker needs: ``base_mb`` at batch size 1, ``per_item_mb`` per further item."""

    base_mb: int
    per_item_mb: int
    source: str

    def at(self, batch_size: int) -> int:
        return self.base_mb + self.per_item_mb * (batch_size - 1)


def estimate_need(
    params_m: float, d_model: int, compute_type: str, kind: DeviceKind
) -> MemoryEntry:
    """The documented formula for a model with no published figure (see the module constants)."""
    weight_bytes, act_bytes = _bytes(compute_type, kind)
    fixed = GPU_FIXED_MB if kind == "cuda" else CPU_FIXED_MB
    per_param = weight_bytes + OVERHEAD_MB_PER_MPARAM * act_bytes / 2
    per_item = math.ceil(PER_ITEM_MB_PER_WIDTH_BYTE[kind] * d_model * act_bytes)
    return MemoryEntry(
        base_mb=math.ceil(fixed + params_m * per_param),
        per_item_mb=per_item,
        source=(
            f"estimated: {fixed} MB + {params_m:g}M params x {per_param:g} MB; "
            f"{per_item} MB per batch item (width {d_model})"
        ),
    )


# --- the tables -----------------------------------------------------------------------------

_README = "faster-whisper README benchmark (v1.1.0, RTX 3070 Ti, 13 min audio, beam 5)"
_README_CPU = "faster-whisper README benchmark (small on CPU, 8 threads, i7-12700K, 13 min, beam 5)"
_ISSUE = "SYSTRAN/faster-whisper#1030 (RTX 3070 Ti, 13 min audio, beam 5)"
_INT8 = "; int8 on a float16 model is int8_float16"


def _published_gpu() -> dict[tuple[str, str], MemoryEntry]:
    large_fp16 = MemoryEntry(
        4525, 224, f"{_README}: large-v2 fp16 4525MB, batch_size=8 6090MB -> 224MB per item"
    )
    large_int8 = MemoryEntry(
        2926, 225, f"{_README}: large-v2 int8 2926MB, batch_size=8 4500MB -> 225MB per item"
    )
    v3_fp16 = MemoryEntry(
        4521, 224, f"{_ISSUE}: large-v3 fp16 4521MB; per item as large-v2 (same architecture)"
    )
    v3_int8 = MemoryEntry(
        2953, 225, f"{_ISSUE}: large-v3 int8 2953MB; per item as large-v2 (same architecture)"
    )
    same = " (large-v1 has large-v2's architecture and size)"
    table = {
        ("large-v2", "float16"): large_fp16,
        ("large-v2", "int8"): large_int8,
        ("large-v2", "int8_float16"): replace(large_int8, source=large_int8.source + _INT8),
        ("large-v1", "float16"): replace(large_fp16, source=large_fp16.source + same),
        ("large-v1", "int8"): replace(large_int8, source=large_int8.source + same),
        ("large-v1", "int8_float16"): replace(large_int8, source=large_int8.source + same + _INT8),
        ("large-v3", "float16"): v3_fp16,
        ("large-v3", "int8"): v3_int8,
        ("large-v3", "int8_float16"): replace(v3_int8, source=v3_int8.source + _INT8),
    }
    # Single-batch peaks only: the per-item increment comes from the formula.
    for model, fp16_mb, int8_mb, label in (
        ("turbo", 2537, 1545, "faster-large-v3-turbo"),
        ("distil-large-v3", 2409, 1481, "faster-distil-large-v3"),
    ):
        spec = MODEL_SPECS[model]
        for compute_type, mb in (
            ("float16", fp16_mb),
            ("int8", int8_mb),
            ("int8_float16", int8_mb),
        ):
            item = estimate_need(spec.params_m, spec.d_model, compute_type, "cuda").per_item_mb
            suffix = _INT8 if compute_type == "int8_float16" else ""
            table[(model, compute_type)] = MemoryEntry(
                mb,
                item,
                f"{_ISSUE}: {label} {'fp16' if compute_type == 'float16' else 'int8'} {mb}MB"
                f"{suffix}; {item}MB per item estimated",
            )
    return table


def _published_cpu() -> dict[tuple[str, str], MemoryEntry]:
    return {
        ("small", "float32"): MemoryEntry(
            2257, 282, f"{_README_CPU}: fp32 2257MB, batch_size=8 4230MB -> 282MB per item"
        ),
        ("small", "int8"): MemoryEntry(
            1477, 304, f"{_README_CPU}: int8 1477MB, batch_size=8 3608MB -> 304MB per item"
        ),
    }


def _build_table(
    kind: DeviceKind, compute_types: Sequence[str], published: Mapping[tuple[str, str], MemoryEntry]
) -> Mapping[tuple[str, str], MemoryEntry]:
    table = dict(published)
    for model, spec in MODEL_SPECS.items():
        for compute_type in compute_types:
            if (model, compute_type) not in table:
                table[(model, compute_type)] = estimate_need(
                    spec.params_m, spec.d_model, compute_type, kind
                )
    return MappingProxyType(table)


GPU_COMPUTE_TYPES = ("float16", "int8_float16", "int8", "float32")
CPU_COMPUTE_TYPES = ("float32", "int8")
# GPU memory one worker needs, per (model, compute type).
MEMORY_NEED_MB = _build_table("cuda", GPU_COMPUTE_TYPES, _published_gpu())
# RAM one CPU worker needs, per (model, compute type).
CPU_MEMORY_NEED_MB = _build_table("cpu", CPU_COMPUTE_TYPES, _published_cpu())


@dataclass(frozen=True, slots=True)
class MemoryNeed:
    """Memory one worker needs for a configuration, and where the figure comes from."""

    mb: int
    source: str


def _check_kind(kind: str) -> None:
    if kind not in ("cuda", "cpu"):
        raise ValueError(f"device kind must be 'cuda' or 'cpu', not {kind!r}")


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")


def measurement_key(
    model: str, compute_type: str, batch_size: int, kind: DeviceKind = "cuda"
) -> str:
    """The key a measured peak is stored under: ``cuda/large-v3/float16/b8``."""
    _check_kind(kind)
    name = canonical_model(model) or model.strip()
    return f"{kind}/{name}/{normalize_compute_type(compute_type, kind)}/b{batch_size}"


def need_mb(
    model: str,
    compute_type: str,
    batch_size: int = 1,
    *,
    kind: DeviceKind = "cuda",
    measured: Mapping[str, MemoryNeed] | None = None,
    params_m: float | None = None,
) -> MemoryNeed:
    """Peak memory of one worker (GPU memory for ``cuda``, RAM for ``cpu``).

    In order: a measurement for exactly this configuration; a measurement at batch size 1 plus
    the table's per-item increment; the table; the formula, from ``params_m`` when given, else
    from a size guessed from the model's name (e.g. ``org/whisper-large-v3-ct2``), else as a
    large model.
    """
    _check_kind(kind)
    _check_batch_size(batch_size)
    ct = normalize_compute_type(compute_type, kind)
    measured = measured or {}
    exact = measured.get(measurement_key(model, ct, batch_size, kind))
    if exact is not None:
        return MemoryNeed(exact.mb, f"measured: {exact.source}")
    entry = _entry(model, ct, kind, params_m)
    single = measured.get(measurement_key(model, ct, 1, kind))
    if single is not None:
        extra = entry.per_item_mb * (batch_size - 1)
        source = f"measured at batch size 1: {single.source}"
        if batch_size > 1:
            source += f"; + {batch_size - 1} x {entry.per_item_mb}MB per item ({entry.source})"
        return MemoryNeed(single.mb + extra, source)
    return MemoryNeed(entry.at(batch_size), entry.source)


def _entry(model: str, ct: str, kind: DeviceKind, params_m: float | None) -> MemoryEntry:
    name = canonical_model(model)
    table = MEMORY_NEED_MB if kind == "cuda" else CPU_MEMORY_NEED_MB
    if name is not None and params_m is None:
        entry = table.get((name, ct))
        if entry is not None:
            return entry
        spec = MODEL_SPECS[name]
        return estimate_need(spec.params_m, spec.d_model, ct, kind)
    if params_m is not None:
        if params_m <= 0:
            raise UsageError(f"parameter count must be above 0, got {params_m}")
        closest = min(MODEL_SPECS.values(), key=lambda s: abs(s.params_m - params_m))
        entry = estimate_need(params_m, closest.d_model, ct, kind)
        return replace(entry, source=f"{entry.source}; {model!r} has {params_m:g}M params")
    guess = _guess_model(model)
    spec = MODEL_SPECS[guess or _FALLBACK_MODEL]
    entry = table.get((guess, ct)) if guess else None
    entry = entry or estimate_need(spec.params_m, spec.d_model, ct, kind)
    if guess:
        note = f"{model!r} taken as {guess} from its name"
    else:
        note = f"{model!r} is unknown; assumed as large as {_FALLBACK_MODEL}"
        log.info("memory need: %s (give the parameter count for a better estimate)", note)
    return replace(entry, source=f"{note}; {entry.source}")


def _guess_model(model: str) -> str | None:
    name = model.strip().lower().rstrip("/").rsplit("/", 1)[-1]
    for target, words in _NAME_GUESSES:
        if all(word in name for word in words):
            return target
    return None


# --- measurements ---------------------------------------------------------------------------


def load_measurements(path: Path) -> dict[str, MemoryNeed]:
    """Measured peaks from a JSON file written by ``record_measurement``; {} when it is absent.

    Format: ``{"version": 1, "measurements": {"cuda/large-v3/float16/b8": {"mb": 6100,
    "source": "…"}}}``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read memory measurements {path}: {exc}") from exc
    try:
        data = json.loads(text)
        items = data["measurements"]
        return {
            str(key): MemoryNeed(mb=int(value["mb"]), source=str(value["source"]))
            for key, value in items.items()
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UsageError(
            f"memory measurements file {path} is not valid ({exc!r}); delete it and it will be "
            "measured again"
        ) from exc


def record_measurement(path: Path, key: str, mb: int, source: str) -> None:
    """Store a measured peak under ``key`` (see ``measurement_key``); the latest one wins.

    Writes a new file and renames it over the old one, so readers never see half a file. Two
    processes recording at once can lose one update: record from the pool's parent process.
    """
    if mb <= 0:
        raise ValueError(f"a measured peak must be above 0 MB, got {mb}")
    current = load_measurements(path)
    current[key] = MemoryNeed(mb=int(mb), source=source)
    payload = {
        "version": 1,
        "measurements": {k: {"mb": v.mb, "source": v.source} for k, v in sorted(current.items())},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- the plan -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapacityOptions:
    margin: float = 0.2  # share of free memory left unused: other processes, estimate error
    min_slots: int = 1  # floor on workers per device, once one worker fits at all
    max_slots: int = 8  # cap on workers per device
    # Plan CPU workers: None when there is no GPU, True also beside GPUs, False never.
    cpu: bool | None = None
    cpu_threads: int | None = None  # threads per CPU worker; None picks from the core count

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 1:
            raise UsageError(f"margin must be at least 0 and below 1, got {self.margin}")
        if not 1 <= self.min_slots <= self.max_slots:
            raise UsageError(
                f"need 1 <= min_slots <= max_slots, got min_slots={self.min_slots}, "
                f"max_slots={self.max_slots}"
            )
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise UsageError(f"cpu_threads must be at least 1, got {self.cpu_threads}")


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """How many workers one device gets, and why."""

    id: str  # "cuda:0" (CUDA index, PCI_BUS_ID order) or "cpu"
    name: str
    kind: DeviceKind
    memory_total_mb: int | None  # GPU memory, or RAM for the CPU; None where unknown
    memory_free_mb: int | None
    need_mb: int  # one worker's peak
    slots: int  # workers to run; 0 when none fits
    threads: int  # CPU threads per worker (intra-op threads for CTranslate2)
    reason: str
    slot_cap: int  # most workers whatever the memory: max_slots, or for the CPU its cores
    need_source: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "memory_total_mb": self.memory_total_mb,
            "memory_free_mb": self.memory_free_mb,
            "need_mb": self.need_mb,
            "slots": self.slots,
            "threads": self.threads,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class CapacityPlan:
    devices: tuple[DevicePlan, ...]
    model: str = ""
    compute_type: str = ""
    batch_size: int = 1
    margin: float = 0.2

    @property
    def max_concurrent(self) -> int:
        """Workers the plan runs at once: the sum of the devices' slots."""
        return sum(d.slots for d in self.devices)

    def to_json(self) -> dict[str, object]:
        return {
            "devices": [d.to_json() for d in self.devices],
            "max_concurrent": self.max_concurrent,
        }

    def with_device(self, entry: DevicePlan) -> CapacityPlan:
        """This plan with the device of the same id replaced by ``entry``."""
        if all(d.id != entry.id for d in self.devices):
            raise ValueError(f"no device {entry.id!r} in the plan")
        return replace(self, devices=tuple(entry if d.id == entry.id else d for d in self.devices))


def _bounded_slots(
    available_mb: float, need: int, cap: int, options: CapacityOptions
) -> tuple[int, str]:
    """Slots for ``available_mb`` of free memory, and the reason in words."""
    usable = available_mb * (1 - options.margin)
    fit = math.floor(usable / need)
    room = f"{usable:.0f} MiB usable ({available_mb:.0f} free less {options.margin:.0%} margin)"
    if fit < 1:
        return 0, f"one worker needs {need} MiB but only {room}"
    if fit > cap:
        return cap, f"capped at {cap}: {fit} x {need} MiB would fit in {room}"
    if fit < options.min_slots:
        slots = min(options.min_slots, cap)
        return slots, (
            f"raised to min_slots={slots} although {fit} x {need} MiB fit in {room}: "
            "may run out of memory"
        )
    return fit, f"{fit} x {need} MiB fit in {room}"


def _plan_gpu(gpu: GpuInfo, need: MemoryNeed, options: CapacityOptions) -> DevicePlan:
    slots, reason = _bounded_slots(gpu.memory_free_mb, need.mb, options.max_slots, options)
    return DevicePlan(
        id=gpu.id,
        name=gpu.name,
        kind="cuda",
        memory_total_mb=gpu.memory_total_mb,
        memory_free_mb=gpu.memory_free_mb,
        need_mb=need.mb,
        slots=slots,
        threads=1,
        reason=reason,
        slot_cap=options.max_slots,
        need_source=need.source,
    )


def cpu_threads_per_worker(cores: int) -> int:
    """Threads per CPU worker when not given.

    CTranslate2 on the CPU gets more throughput from several independent workers than from one
    worker with every core: its per-operation threading has to synchronise on the decoder's
    small matrices, and workers do not. So 1 thread each while cores are few. Each worker holds
    a whole copy of the model, though, and they share memory bandwidth, and a 1-thread worker
    takes long over a 30 s chunk (the last chunks of a file then finish late); so 2 threads per
    worker up to 16 cores and 4 beyond.
    """
    if cores <= 4:
        return 1
    return 2 if cores <= 16 else 4


def _plan_cpu(
    cores: int, memory: SystemMemory | None, need: MemoryNeed, options: CapacityOptions
) -> DevicePlan:
    if cores < 1:
        raise ValueError(f"cpu_cores must be at least 1, got {cores}")
    threads = min(options.cpu_threads or cpu_threads_per_worker(cores), cores)
    cap = min(max(1, cores // threads), options.max_slots)
    if memory is None:
        slots = cap
        reason = f"{slots} x {threads} threads on {cores} cores (RAM unknown, not checked)"
    else:
        slots, reason = _bounded_slots(memory.available_mb, need.mb, cap, options)
    if slots and options.cpu_threads is None:
        threads = max(threads, cores // slots)  # spread every core over the workers there are
    if slots:
        reason = f"{slots} worker(s) x {threads} thread(s) on {cores} cores; {reason}"
    return DevicePlan(
        id="cpu",
        name=f"CPU ({cores} cores)",
        kind="cpu",
        memory_total_mb=memory.total_mb if memory else None,
        memory_free_mb=memory.available_mb if memory else None,
        need_mb=need.mb,
        slots=slots,
        threads=threads,
        reason=reason,
        slot_cap=cap,
        need_source=need.source,
    )


def plan_capacity(
    gpus: Sequence[GpuInfo],
    model: str,
    compute_type: str,
    batch_size: int,
    options: CapacityOptions,
    cpu_cores: int,
    *,
    memory: SystemMemory | None = None,
    measured: Mapping[str, MemoryNeed] | None = None,
    params_m: float | None = None,
) -> CapacityPlan:
    """Workers per device for ``model`` at ``compute_type`` and ``batch_size``.

    Per GPU: usable = free x (1 - margin); slots = floor(usable / need), bounded to
    [min_slots, max_slots] when at least one fits, else 0 with the reason. The CPU is planned
    when there is no GPU (or ``options.cpu`` says so): workers and threads from ``cpu_cores``
    (see ``cpu_threads_per_worker``), at most max_slots, and no more than ``memory`` holds.
    GPU workers also use some CPU and RAM; the plan does not reserve any for them.
    """
    _check_batch_size(batch_size)
    devices = []
    if gpus:
        need = need_mb(
            model, compute_type, batch_size, kind="cuda", measured=measured, params_m=params_m
        )
        devices = [_plan_gpu(gpu, need, options) for gpu in gpus]
    if options.cpu if options.cpu is not None else not gpus:
        need = need_mb(
            model, compute_type, batch_size, kind="cpu", measured=measured, params_m=params_m
        )
        devices.append(_plan_cpu(cpu_cores, memory, need, options))
    return CapacityPlan(
        devices=tuple(devices),
        model=model,
        compute_type=compute_type,
        batch_size=batch_size,
        margin=options.margin,
    )


def ensure_usable(plan: CapacityPlan) -> None:
    """Raise DeviceError, with every device's reason, when the plan runs no worker at all."""
    if plan.max_concurrent > 0:
        return
    if not plan.devices:
        raise DeviceError(
            "no device to run on: no GPU was found and the CPU is switched off; "
            "use --devices cpu or auto"
        )
    reasons = "; ".join(f"{d.id}: {d.reason}" for d in plan.devices)
    raise DeviceError(
        f"no device has room for one {plan.model} worker ({reasons}); use a smaller model, "
        "compute type int8, a smaller batch size, or free some memory"
    )


def replan_device(
    entry: DevicePlan, new_free_mb: int, options: CapacityOptions, *, held_mb: int
) -> DevicePlan:
    """``entry`` re-planned from a fresh free-memory reading, within the same bounds.

    ``held_mb``: memory this pool's own workers hold on the device now (their count x
    ``entry.need_mb``, or NVML's per-process figures). A reading taken while they run no longer
    counts it as free; without adding it back, each re-plan would shrink the pool by its own
    size. Threads per worker are left as they are: running workers keep theirs.
    """
    if new_free_mb < 0 or held_mb < 0:
        raise ValueError(f"memory cannot be negative: free {new_free_mb}, held {held_mb}")
    slots, reason = _bounded_slots(new_free_mb + held_mb, entry.need_mb, entry.slot_cap, options)
    if held_mb:
        reason += f" (counting {held_mb} MiB held by running workers)"
    return replace(entry, memory_free_mb=new_free_mb, slots=slots, reason=reason)


class OomAction(str, Enum):
    DROP_SLOT = "drop_slot"  # run one worker fewer on the device
    HALVE_BATCH = "halve_batch"  # keep the one worker, with half the batch
    GIVE_UP = "give_up"  # one worker at batch size 1 does not fit: stop using the device


@dataclass(frozen=True, slots=True)
class OomDecision:
    action: OomAction
    slots: int
    batch_size: int
    reason: str


def shrink_after_oom(slots: int, batch_size: int) -> OomDecision:
    """What to run after a worker ran out of memory with ``slots`` workers at ``batch_size``.

    One worker fewer first (it frees a whole model copy); with one worker left, half the batch;
    with one worker at batch size 1, give the device up. This goes below ``min_slots``: running
    out of memory is stronger evidence than the estimate the floor was applied to.
    """
    if slots < 1 or batch_size < 1:
        raise ValueError(f"slots and batch size must be at least 1, got {slots}, {batch_size}")
    if slots > 1:
        return OomDecision(
            OomAction.DROP_SLOT,
            slots - 1,
            batch_size,
            f"out of memory: {slots} -> {slots - 1} workers",
        )
    if batch_size > 1:
        half = batch_size // 2
        return OomDecision(
            OomAction.HALVE_BATCH,
            1,
            half,
            f"out of memory with 1 worker: batch {batch_size} -> {half}",
        )
    return OomDecision(
        OomAction.GIVE_UP,
        0,
        1,
        "out of memory with 1 worker at batch size 1: the device cannot hold this model; "
        "use a smaller model or compute type int8",
    )


# --- display --------------------------------------------------------------------------------


def _gib(mb: int | None) -> str:
    return "-" if mb is None else f"{mb / 1024:.1f} GiB"


def format_plan(plan: CapacityPlan) -> str:
    """The plan as a table for ``whisper-subs devices``."""
    header = ("DEVICE", "NAME", "TOTAL", "FREE", "NEED", "SLOTS", "THREADS", "REASON")
    rows = [
        (
            d.id,
            d.name,
            _gib(d.memory_total_mb),
            _gib(d.memory_free_mb),
            _gib(d.need_mb),
            str(d.slots),
            str(d.threads),
            d.reason,
        )
        for d in plan.devices
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]

    def line(row: Sequence[str]) -> str:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        return "  ".join([*cells, row[-1]]).rstrip()

    lines = [
        f"model {plan.model}, compute type {plan.compute_type}, batch size {plan.batch_size}, "
        f"margin {plan.margin:.0%}",
        line(header),
        *(line(row) for row in rows),
    ]
    if not rows:
        lines.append("(no device)")
    lines.append(f"max concurrent workers: {plan.max_concurrent}")
    seen: set[tuple[str, str]] = set()
    for d in plan.devices:
        if (d.kind, d.need_source) not in seen:
            seen.add((d.kind, d.need_source))
            lines.append(f"need per {d.kind} worker: {d.need_mb} MiB ({d.need_source})")
    return "\n".join(lines)
