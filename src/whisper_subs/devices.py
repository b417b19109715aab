"""Find the devices a pool can use: NVIDIA GPUs through NVML, CPU cores, system memory.

Nothing here reads the environment: the CLI (or app factory) reads ``WHISPER_SUBS_FAKE_GPUS``,
``CUDA_VISIBLE_DEVICES`` and ``--devices`` once and passes the strings in.

CUDA indices. NVML enumerates devices in its own order; CUDA's default order
(``CUDA_DEVICE_ORDER=FASTEST_FIRST``) puts the fastest GPU first, which can differ from both.
Here a ``GpuInfo.index`` is the index CUDA gives under ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (GPUs
sorted by PCI bus id, then filtered and reordered by ``CUDA_VISIBLE_DEVICES``), so workers must run
with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``. ``cuda_env`` goes further and pins a worker to its GPU by
UUID, which no ordering can get wrong; that worker then sees its GPU as ``cuda:0``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import DeviceError, UsageError

log = logging.getLogger(__name__)

FAKE_GPUS_ENV = "WHISPER_SUBS_FAKE_GPUS"  # read by the CLI; its value goes to discover_gpus(fake=)
FAKE_UUID_PREFIX = "FAKE-GPU-"
_MIB = 1024 * 1024
_NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU as NVML (or a fake spec) reports it. Memory in MiB, as nvidia-smi shows it."""

    index: int  # CUDA index under CUDA_DEVICE_ORDER=PCI_BUS_ID and the given CUDA_VISIBLE_DEVICES
    name: str
    uuid: str  # "GPU-…"; what cuda_env pins a worker to
    pci_bus_id: str  # "00000000:3B:00.0"
    memory_total_mb: int
    memory_free_mb: int
    utilization_pct: int | None  # None where the GPU does not report it (some vGPUs)

    @property
    def id(self) -> str:
        return f"cuda:{self.index}"

    @property
    def is_fake(self) -> bool:
        return self.uuid.startswith(FAKE_UUID_PREFIX)


# --- fake GPUs ------------------------------------------------------------------------------


def parse_fake_gpus(spec: str) -> list[GpuInfo]:
    """GPUs from a ``WHISPER_SUBS_FAKE_GPUS`` value: ``TOTAL_GB/FREE_GB`` items, comma-separated.

    ``"80/80,80/40,24/1.5"`` makes three GPUs named ``Fake GPU 0..2``. GB here are GiB (1024 MiB),
    as an "80 GB" card reports 81920 MiB. An empty value (or ``none``) means "no GPU", which lets
    a test force the CPU path without touching NVML.
    """
    text = spec.strip()
    if not text or text.lower() == "none":
        return []
    gpus = []
    for number, item in enumerate(text.split(","), start=1):
        total_gb, free_gb = _parse_fake_item(spec, number, item)
        i = number - 1
        gpus.append(
            GpuInfo(
                index=i,
                name=f"Fake GPU {i}",
                uuid=f"{FAKE_UUID_PREFIX}{i}",
                pci_bus_id=f"FAKE:{i:04X}:00.0",
                memory_total_mb=round(total_gb * 1024),
                memory_free_mb=round(free_gb * 1024),
                utilization_pct=0,
            )
        )
    return gpus


def _parse_fake_item(spec: str, number: int, item: str) -> tuple[float, float]:
    hint = (
        f"{FAKE_GPUS_ENV}={spec!r}: item {number} ({item.strip()!r}) is not TOTAL_GB/FREE_GB; "
        "give comma-separated pairs such as 80/80,80/40,24/1.5"
    )
    parts = item.split("/")
    if len(parts) != 2:
        raise UsageError(hint)
    try:
        total, free = float(parts[0]), float(parts[1])
    except ValueError as exc:
        raise UsageError(hint) from exc
    if not (math.isfinite(total) and math.isfinite(free)) or total <= 0 or free < 0:
        raise UsageError(f"{hint} (total must be above 0, free at least 0)")
    if free > total:
        raise UsageError(f"{hint} (free {free:g} GB is more than total {total:g} GB)")
    return total, free


# --- NVML -----------------------------------------------------------------------------------


def discover_gpus(
    fake: str | None = None,
    visible_devices: str | None = None,
    *,
    nvml: Any = None,
) -> list[GpuInfo]:
    """The GPUs this process may use, in CUDA (PCI_BUS_ID) index order.

    ``fake``: the value of ``WHISPER_SUBS_FAKE_GPUS`` (None when unset); when given, NVML is not
    touched. ``visible_devices``: the value of ``CUDA_VISIBLE_DEVICES`` the caller runs under (None
    when unset), applied as CUDA would; see ``assign_cuda_indices``. ``nvml``: an object with
    pynvml's functions, for tests; None imports ``pynvml`` (nvidia-ml-py).

    No driver, no GPU or an NVML failure gives ``[]`` and a debug log, never an exception: the
    caller falls back to the CPU. A malformed ``fake`` raises UsageError.
    """
    if fake is not None:
        return assign_cuda_indices(parse_fake_gpus(fake), visible_devices)
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            log.debug("nvidia-ml-py is not installed: no GPUs")
            return []
    return assign_cuda_indices(_read_nvml(nvml), visible_devices)


def _read_nvml(nvml: Any) -> list[GpuInfo]:
    try:
        nvml.nvmlInit()
    except (nvml.NVMLError, OSError) as exc:
        log.debug("NVML unavailable (%s): no GPUs", exc)
        return []
    try:
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            try:
                gpu = _read_nvml_device(nvml, i)
            except nvml.NVMLError as exc:
                # One broken GPU (fallen off the bus, in reset) must not hide the others.
                log.warning("GPU %d (NVML order) cannot be read (%s); leaving it out", i, exc)
                continue
            if gpu is not None:
                gpus.append(gpu)
        return gpus
    except (nvml.NVMLError, OSError) as exc:
        log.debug("NVML failed while listing GPUs (%s): no GPUs", exc)
        return []
    finally:
        with contextlib.suppress(nvml.NVMLError, OSError):
            nvml.nvmlShutdown()


def _read_nvml_device(nvml: Any, i: int) -> GpuInfo | None:
    handle = nvml.nvmlDeviceGetHandleByIndex(i)
    name = _text(nvml.nvmlDeviceGetName(handle))
    if _mig_enabled(nvml, handle):
        # CUDA then enumerates MIG slices, not this GPU, and its free memory is not theirs.
        log.warning(
            "GPU %d (%s) has MIG enabled; MIG slices are not supported, leaving it out", i, name
        )
        return None
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        utilization: int | None = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except nvml.NVMLError:
        utilization = None
    return GpuInfo(
        index=i,
        name=name,
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
        pci_bus_id=_text(nvml.nvmlDeviceGetPciInfo(handle).busId),
        memory_total_mb=int(memory.total) // _MIB,
        memory_free_mb=int(memory.free) // _MIB,
        utilization_pct=utilization,
    )


def _mig_enabled(nvml: Any, handle: object) -> bool:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except (nvml.NVMLError, AttributeError):
        return False  # NOT_SUPPORTED on GPUs without MIG
    return bool(current)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- CUDA ordering --------------------------------------------------------------------------


def pci_sort_key(bus_id: str) -> tuple[int, int, int, int, int] | tuple[int, str]:
    """Sort key for ``domain:bus:device.function`` (hex), the order CUDA's PCI_BUS_ID uses."""
    try:
        domain, bus, rest = bus_id.split(":")
        device, function = rest.split(".")
        return (0, int(domain, 16), int(bus, 16), int(device, 16), int(function, 16))
    except ValueError:
        return (1, bus_id)  # not a PCI address (fake GPUs): after real ones, by text


def assign_cuda_indices(gpus: Sequence[GpuInfo], visible_devices: str | None) -> list[GpuInfo]:
    """Sort ``gpus`` by PCI bus id, apply ``CUDA_VISIBLE_DEVICES``, number them from 0.

    Follows CUDA's rules for ``visible_devices``: items are indices (into the PCI-ordered list)
    or UUIDs (``GPU-…``, a unique prefix is enough); the result is in the listed order; an empty
    value hides every GPU; the first invalid, unknown or repeated item hides itself and everything
    after it (so ``-1`` hides all). MIG UUIDs are not supported and count as invalid.

    Integer items are read in PCI_BUS_ID order. A parent that set ``CUDA_VISIBLE_DEVICES=1``
    under CUDA's default FASTEST_FIRST order may mean another GPU when the GPUs differ; UUIDs are
    unambiguous.
    """
    ordered = sorted(gpus, key=lambda g: pci_sort_key(g.pci_bus_id))
    if visible_devices is None:
        chosen = ordered
    else:
        chosen = []
        for item in visible_devices.split(","):
            gpu = _match_visible(item.strip(), ordered)
            if gpu is None or gpu in chosen:
                if item.strip():
                    log.debug("CUDA_VISIBLE_DEVICES item %r hides itself and what follows", item)
                break
            chosen.append(gpu)
    return [replace(gpu, index=i) for i, gpu in enumerate(chosen)]


def _match_visible(item: str, ordered: Sequence[GpuInfo]) -> GpuInfo | None:
    if item.isdigit():
        position = int(item)
        return ordered[position] if position < len(ordered) else None
    if item.upper().startswith("GPU-"):
        matches = [g for g in ordered if g.uuid.upper().startswith(item.upper())]
        return matches[0] if len(matches) == 1 else None
    return None


def cuda_env(gpu: GpuInfo) -> dict[str, str]:
    """Environment for a worker that uses ``gpu``: set before CUDA (the engine) is imported.

    The worker sees only this GPU, as ``cuda:0`` (device_index 0), whatever order the parent used.
    """
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": gpu.uuid}


# --- CPU and memory -------------------------------------------------------------------------


def cpu_count(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota.

    ``os.cpu_count()`` counts the machine; a container or ``taskset`` often allows fewer.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, quota)
    return max(1, cores)


def _cgroup_cpu_quota(root: Path) -> int | None:
    v2 = _read_words(root / "cpu.max")  # "max 100000" or "200000 100000"
    if v2 and len(v2) == 2 and v2[0] != "max":
        return _ceil_ratio(v2[0], v2[1])
    quota = _read_words(root / "cpu" / "cpu.cfs_quota_us")  # v1: -1 when unlimited
    period = _read_words(root / "cpu" / "cpu.cfs_period_us")
    if quota and period and not quota[0].startswith("-"):
        return _ceil_ratio(quota[0], period[0])
    return None


def _ceil_ratio(numerator: str, denominator: str) -> int | None:
    try:
        num, den = int(numerator), int(denominator)
    except ValueError:
        return None
    return max(1, -(-num // den)) if num > 0 and den > 0 else None


def _read_words(path: Path) -> list[str] | None:
    try:
        return path.read_text().split()
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class SystemMemory:
    """RAM this process may use, in MiB, after a cgroup memory limit where there is one."""

    total_mb: int
    available_mb: int


def system_memory(
    meminfo: Path = Path("/proc/meminfo"), cgroup_root: Path = Path("/sys/fs/cgroup")
) -> SystemMemory | None:
    """Total and available RAM (Linux ``/proc/meminfo`` and cgroup v1/v2); None where unknown."""
    values: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            words = rest.split()
            if words and words[0].isdigit():
                values[key] = int(words[0]) // 1024  # kB -> MiB
    except OSError:
        log.debug("%s is not readable: system memory unknown", meminfo)
        return None
    if "MemTotal" not in values:
        return None
    total = values["MemTotal"]
    available = values.get("MemAvailable", values.get("MemFree", total))
    limit = _cgroup_memory(cgroup_root)
    if limit is not None:
        limit_mb, used_mb = limit
        total = min(total, limit_mb)
        available = min(available, max(0, limit_mb - used_mb))
    return SystemMemory(total_mb=total, available_mb=available)


def _cgroup_memory(root: Path) -> tuple[int, int] | None:
    for limit_file, usage_file in (
        (root / "memory.max", root / "memory.current"),
        (root / "memory" / "memory.limit_in_bytes", root / "memory" / "memory.usage_in_bytes"),
    ):
        limit, usage = _read_words(limit_file), _read_words(usage_file)
        if limit and limit[0].isdigit() and int(limit[0]) < _NO_LIMIT:
            used = int(usage[0]) if usage and usage[0].isdigit() else 0
            return int(limit[0]) // _MIB, used // _MIB
    return None


# --- --devices ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceSelection:
    """What a ``--devices`` value asked for."""

    auto: bool = False  # every GPU; the CPU when there is none
    all_cuda: bool = False  # every GPU, and an error when there is none
    cuda: tuple[int, ...] = ()  # these CUDA indices (PCI_BUS_ID order)
    cpu: bool = False


_DEVICES_HINT = "use auto, cpu, cuda, cuda:N or N, comma-separated (e.g. cuda:0,1 or 0,cpu)"


def parse_device_list(spec: str) -> DeviceSelection:
    """Parse ``--devices``: ``auto`` (or empty), ``cpu``, ``cuda``/``gpu`` (all GPUs),
    ``cuda:0,1``, ``cuda:0,cuda:1``, ``0,1``, or GPUs and ``cpu`` together (``cuda:0,cpu``).
    Case and spaces do not matter; repeats count once. Bad values raise UsageError.
    """
    text = spec.strip().lower()
    if text in ("", "auto"):
        return DeviceSelection(auto=True)
    all_cuda = cpu = False
    indices: list[int] = []
    for raw in text.split(","):
        item = raw.strip()
        if item in ("cuda", "gpu"):
            all_cuda = True
            continue
        if item == "cpu":
            cpu = True
            continue
        number = item.partition(":")[2] if item.startswith(("cuda:", "gpu:")) else item
        if not number.isdigit():
            why = "auto cannot be combined with other devices" if item == "auto" else ""
            raise UsageError(
                f"--devices {spec!r}: {item!r} is not a device{'; ' + why if why else ''}; "
                f"{_DEVICES_HINT}"
            )
        if int(number) not in indices:
            indices.append(int(number))
    return DeviceSelection(all_cuda=all_cuda, cuda=() if all_cuda else tuple(indices), cpu=cpu)


@dataclass(frozen=True, slots=True)
class SelectedDevices:
    gpus: tuple[GpuInfo, ...]
    cpu: bool


def select_devices(selection: DeviceSelection, gpus: Sequence[GpuInfo]) -> SelectedDevices:
    """The discovered GPUs a selection names, and whether to use the CPU; DeviceError if absent."""
    if selection.auto:
        return SelectedDevices(gpus=tuple(gpus), cpu=not gpus)
    found = ", ".join(g.id for g in gpus) or "none"
    if selection.all_cuda:
        if not gpus:
            raise DeviceError(
                "--devices asked for every GPU but none was found (no NVIDIA driver, no GPU, "
                "or CUDA_VISIBLE_DEVICES hides them); use --devices cpu or auto"
            )
        return SelectedDevices(gpus=tuple(gpus), cpu=selection.cpu)
    by_index = {g.index: g for g in gpus}
    missing = [i for i in selection.cuda if i not in by_index]
    if missing:
        raise DeviceError(
            f"--devices names cuda:{missing[0]}, which does not exist; GPUs found: {found} "
            "(indices are in PCI bus order, after CUDA_VISIBLE_DEVICES)"
        )
    return SelectedDevices(gpus=tuple(by_index[i] for i in selection.cuda), cpu=selection.cpu)
