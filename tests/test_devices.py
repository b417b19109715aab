from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from whisper_subs.devices import (
    FAKE_GPUS_ENV,
    DeviceSelection,
    GpuInfo,
    assign_cuda_indices,
    cpu_count,
    cuda_env,
    discover_gpus,
    parse_device_list,
    parse_fake_gpus,
    pci_sort_key,
    select_devices,
    system_memory,
)
from whisper_subs.errors import DeviceError, UsageError

# --- fake GPUs ------------------------------------------------------------------------------


def test_fake_gpus_from_the_seed_spec() -> None:
    gpus = parse_fake_gpus("80/80,80/40,24/1.5")
    assert [g.name for g in gpus] == ["Fake GPU 0", "Fake GPU 1", "Fake GPU 2"]
    assert [g.index for g in gpus] == [0, 1, 2]
    assert [(g.memory_total_mb, g.memory_free_mb) for g in gpus] == [
        (81920, 81920),
        (81920, 40960),
        (24576, 1536),
    ]
    assert all(g.is_fake for g in gpus)
    assert [g.id for g in gpus] == ["cuda:0", "cuda:1", "cuda:2"]


def test_fake_gpus_allow_spaces() -> None:
    assert [g.memory_free_mb for g in parse_fake_gpus(" 80 / 80 , 24/1.5 ")] == [81920, 1536]


@pytest.mark.parametrize("spec", ["", "  ", "none", "NONE"])
def test_empty_fake_spec_means_no_gpu(spec: str) -> None:
    assert parse_fake_gpus(spec) == []
    assert discover_gpus(fake=spec) == []


@pytest.mark.parametrize(
    "spec",
    ["80", "80/", "/80", "a/b", "80/40/20", "80/90", "0/0", "-1/0", "80/-1", "80/80,", "nan/1",
     "inf/1", "80/80;24/1"],
)  # fmt: skip
def test_bad_fake_spec_is_a_usage_error(spec: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_fake_gpus(spec)
    message = str(info.value)
    assert FAKE_GPUS_ENV in message
    assert "80/80,80/40,24/1.5" in message  # says what to write instead


def test_fake_spec_error_names_the_bad_item() -> None:
    with pytest.raises(UsageError, match=r"item 2 \('24/x'\)"):
        parse_fake_gpus("80/80,24/x")


def test_discover_fake_honours_visible_devices() -> None:
    gpus = discover_gpus(fake="80/80,80/40,24/1.5", visible_devices="2,0")
    assert [(g.index, g.name) for g in gpus] == [(0, "Fake GPU 2"), (1, "Fake GPU 0")]


# --- NVML -----------------------------------------------------------------------------------


def _nvml_works() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_discover_without_driver_returns_empty(caplog: pytest.LogCaptureFixture) -> None:
    if _nvml_works():
        pytest.skip("this machine has an NVIDIA driver")
    with caplog.at_level(logging.DEBUG, logger="whisper_subs.devices"):
        assert discover_gpus() == []
    assert "NVML unavailable" in caplog.text


class FakeNvmlError(Exception):
    pass


class FakeNvml:
    """The pynvml functions discover_gpus calls, over a list of devices."""

    NVMLError = FakeNvmlError

    def __init__(self, devices: list[dict[str, object]], init_error: bool = False) -> None:
        self.devices = devices
        self.init_error = init_error
        self.shut_down = False

    def nvmlInit(self) -> None:
        if self.init_error:
            raise FakeNvmlError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, object]:
        return self.devices[i]

    def nvmlDeviceGetName(self, h: dict[str, object]) -> object:
        if h.get("broken"):
            raise FakeNvmlError("GPU is lost")
        return h["name"]

    def nvmlDeviceGetUUID(self, h: dict[str, object]) -> object:
        return h["uuid"]

    def nvmlDeviceGetMigMode(self, h: dict[str, object]) -> tuple[int, int]:
        if "mig" not in h:
            raise FakeNvmlError("Not Supported")
        return (int(h["mig"]), 0)  # type: ignore[call-overload]

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, object]) -> SimpleNamespace:
        return SimpleNamespace(total=h["total"], free=h["free"], used=0)

    def nvmlDeviceGetUtilizationRates(self, h: dict[str, object]) -> SimpleNamespace:
        if h.get("util") is None:
            raise FakeNvmlError("Not Supported")
        return SimpleNamespace(gpu=h["util"], memory=0)

    def nvmlDeviceGetPciInfo(self, h: dict[str, object]) -> SimpleNamespace:
        return SimpleNamespace(busId=h["bus"])


GIB = 1024**3


def _device(bus: str, name: str, uuid: str, **extra: object) -> dict[str, object]:
    return {"bus": bus, "name": name, "uuid": uuid, "total": 80 * GIB, "free": 79 * GIB,
            "util": 5, **extra}  # fmt: skip


def test_discover_orders_nvml_devices_by_pci_bus_id() -> None:
    nvml = FakeNvml(
        [
            _device(b"00000000:81:00.0", b"NVIDIA H100", "GPU-ccc"),
            _device(b"00000000:01:00.0", "NVIDIA A100", "GPU-aaa", util=None),
            _device("00000000:41:00.0", "NVIDIA L4", "GPU-bbb", total=24 * GIB, free=GIB // 2),
        ]
    )
    gpus = discover_gpus(nvml=nvml)
    assert [(g.index, g.name, g.uuid) for g in gpus] == [
        (0, "NVIDIA A100", "GPU-aaa"),
        (1, "NVIDIA L4", "GPU-bbb"),
        (2, "NVIDIA H100", "GPU-ccc"),
    ]
    assert gpus[0].utilization_pct is None
    assert gpus[2].utilization_pct == 5
    assert gpus[2].pci_bus_id == "00000000:81:00.0"
    assert (gpus[1].memory_total_mb, gpus[1].memory_free_mb) == (24576, 512)
    assert nvml.shut_down


def test_discover_init_failure_returns_empty() -> None:
    assert discover_gpus(nvml=FakeNvml([], init_error=True)) == []


def test_discover_skips_a_broken_or_mig_gpu(caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml(
        [
            _device("00000000:01:00.0", "A", "GPU-a", broken=True),
            _device("00000000:02:00.0", "B", "GPU-b", mig=1),
            _device("00000000:03:00.0", "C", "GPU-c", mig=0),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="whisper_subs.devices"):
        gpus = discover_gpus(nvml=nvml)
    assert [(g.index, g.name) for g in gpus] == [(0, "C")]
    assert "GPU is lost" in caplog.text
    assert "MIG" in caplog.text
    assert nvml.shut_down


# --- CUDA ordering --------------------------------------------------------------------------


def _gpu(bus: str, uuid: str) -> GpuInfo:
    return GpuInfo(0, uuid, uuid, bus, 1000, 1000, 0)


NVML_ORDER = [
    _gpu("00000000:81:00.0", "GPU-c1"),
    _gpu("00000000:01:00.0", "GPU-a1"),
    _gpu("00000000:41:00.0", "GPU-b1"),
]


def _uuids(gpus: list[GpuInfo]) -> list[str]:
    assert [g.index for g in gpus] == list(range(len(gpus)))
    return [g.uuid for g in gpus]


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, ["GPU-a1", "GPU-b1", "GPU-c1"]),
        ("2,0", ["GPU-c1", "GPU-a1"]),
        (" 1 ", ["GPU-b1"]),
        ("", []),
        ("-1", []),
        ("0,7,1", ["GPU-a1"]),  # an invalid index hides itself and what follows
        ("0,0,1", ["GPU-a1"]),  # so does a repeat
        ("GPU-b1,GPU-c", ["GPU-b1", "GPU-c1"]),  # UUIDs, or a unique prefix
        ("gpu-c1", ["GPU-c1"]),
        ("GPU-,0", []),  # an ambiguous prefix is invalid
        ("MIG-abc", []),
    ],
)
def test_cuda_visible_devices(visible: str | None, expected: list[str]) -> None:
    assert _uuids(assign_cuda_indices(NVML_ORDER, visible)) == expected


def test_pci_sort_key_orders_domain_then_bus() -> None:
    ids = ["00000001:00:00.0", "00000000:FF:00.0", "00000000:3b:00.1", "00000000:3B:00.0"]
    assert sorted(ids, key=pci_sort_key) == [
        "00000000:3B:00.0",
        "00000000:3b:00.1",
        "00000000:FF:00.0",
        "00000001:00:00.0",
    ]
    assert pci_sort_key("00000000:FF:00.0") < pci_sort_key("not-a-bus-id")


def test_cuda_env_pins_by_uuid() -> None:
    env = cuda_env(NVML_ORDER[0])
    assert env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "GPU-c1"}


# --- CPU and memory -------------------------------------------------------------------------


def test_cpu_count_without_cgroup(tmp_path: Path) -> None:
    import os

    assert cpu_count(tmp_path) == len(os.sched_getaffinity(0))


def test_cpu_count_cgroup_v2_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_count(tmp_path) == min(2, cpu_count(tmp_path / "absent"))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_count(tmp_path) == cpu_count(tmp_path / "absent")


def test_cpu_count_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_count(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_count(tmp_path) >= 1


def test_system_memory(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  16777216 kB\nMemFree:  1024 kB\nMemAvailable:  8388608 kB\n")
    assert system_memory(meminfo, tmp_path) == system_memory(meminfo, tmp_path / "none")
    memory = system_memory(meminfo, tmp_path)
    assert memory is not None
    assert (memory.total_mb, memory.available_mb) == (16384, 8192)
    (tmp_path / "memory.max").write_text(str(4 * GIB))
    (tmp_path / "memory.current").write_text(str(GIB))
    memory = system_memory(meminfo, tmp_path)
    assert memory is not None
    assert (memory.total_mb, memory.available_mb) == (4096, 3072)
    assert system_memory(tmp_path / "absent", tmp_path) is None


def test_system_memory_here() -> None:
    memory = system_memory()
    assert memory is None or 0 <= memory.available_mb <= memory.total_mb


# --- --devices ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("auto", DeviceSelection(auto=True)),
        ("", DeviceSelection(auto=True)),
        (" AUTO ", DeviceSelection(auto=True)),
        ("cpu", DeviceSelection(cpu=True)),
        ("cuda", DeviceSelection(all_cuda=True)),
        ("gpu,cpu", DeviceSelection(all_cuda=True, cpu=True)),
        ("0,1", DeviceSelection(cuda=(0, 1))),
        ("cuda:0,1", DeviceSelection(cuda=(0, 1))),
        ("cuda:0,cuda:1", DeviceSelection(cuda=(0, 1))),
        ("CUDA:1, 0", DeviceSelection(cuda=(1, 0))),
        ("gpu:2", DeviceSelection(cuda=(2,))),
        ("cuda:0,cpu", DeviceSelection(cuda=(0,), cpu=True)),
        ("0,0", DeviceSelection(cuda=(0,))),
    ],
)
def test_parse_device_list(spec: str, expected: DeviceSelection) -> None:
    assert parse_device_list(spec) == expected


@pytest.mark.parametrize("spec", ["cuda:x", "tpu", "auto,cpu", "0,,1", "-1", "cuda:", "1.5"])
def test_parse_device_list_rejects(spec: str) -> None:
    with pytest.raises(UsageError, match="cuda:N"):
        parse_device_list(spec)


def test_select_devices() -> None:
    gpus = parse_fake_gpus("80/80,24/10")
    auto = select_devices(DeviceSelection(auto=True), gpus)
    assert (auto.gpus, auto.cpu) == (tuple(gpus), False)
    assert select_devices(DeviceSelection(auto=True), []).cpu
    chosen = select_devices(parse_device_list("cuda:1,cpu"), gpus)
    assert ([g.name for g in chosen.gpus], chosen.cpu) == (["Fake GPU 1"], True)
    assert select_devices(parse_device_list("cpu"), []).gpus == ()


def test_select_devices_errors() -> None:
    gpus = parse_fake_gpus("80/80,24/10")
    with pytest.raises(DeviceError, match=r"cuda:3.*cuda:0, cuda:1"):
        select_devices(parse_device_list("cuda:0,3"), gpus)
    with pytest.raises(DeviceError, match="--devices cpu"):
        select_devices(parse_device_list("cuda"), [])
