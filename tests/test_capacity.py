from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whisper_subs.capacity import (
    CPU_MEMORY_NEED_MB,
    MEMORY_NEED_MB,
    MODEL_SPECS,
    CapacityOptions,
    CapacityPlan,
    DevicePlan,
    MemoryNeed,
    OomAction,
    ensure_usable,
    estimate_need,
    format_plan,
    load_measurements,
    measurement_key,
    need_mb,
    normalize_compute_type,
    plan_capacity,
    record_measurement,
    replan_device,
    shrink_after_oom,
)
from whisper_subs.devices import SystemMemory, parse_fake_gpus
from whisper_subs.errors import DeviceError, UsageError

SEED = "80/80,80/40,24/1.5"
OPTIONS = CapacityOptions(margin=0.2, min_slots=1, max_slots=8)

# --- the need table -------------------------------------------------------------------------


def test_published_gpu_figures() -> None:
    fp16 = need_mb("large-v2", "float16")
    assert fp16.mb == 4525
    assert "faster-whisper README" in fp16.source
    # batch_size=8 rows of the README: 6090MB and 4500MB.
    assert abs(need_mb("large-v2", "float16", 8).mb - 6090) <= 5
    assert abs(need_mb("large-v2", "int8", 8).mb - 4500) <= 5
    assert need_mb("large-v3", "float16").mb == 4521
    assert "#1030" in need_mb("large-v3", "float16").source
    assert need_mb("turbo", "int8").mb == 1545
    assert need_mb("distil-large-v3", "float16").mb == 2409


def test_published_cpu_figures() -> None:
    assert need_mb("small", "float32", kind="cpu").mb == 2257
    assert abs(need_mb("small", "float32", 8, kind="cpu").mb - 4230) <= 5
    assert abs(need_mb("small", "int8", 8, kind="cpu").mb - 3608) <= 5


def test_table_covers_every_model_and_compute_type() -> None:
    for model in MODEL_SPECS:
        for compute_type in ("float16", "int8_float16", "int8", "float32"):
            entry = MEMORY_NEED_MB[(model, compute_type)]
            assert entry.base_mb > 0 and entry.per_item_mb > 0 and entry.source
        for compute_type in ("float32", "int8"):
            entry = CPU_MEMORY_NEED_MB[(model, compute_type)]
            assert entry.base_mb > 0 and entry.per_item_mb > 0 and entry.source


@pytest.mark.parametrize(
    ("model", "compute_type", "kind"),
    [
        ("large-v2", "float16", "cuda"),
        ("large-v2", "int8", "cuda"),
        ("large-v3", "float16", "cuda"),
        ("large-v3", "int8", "cuda"),
        ("turbo", "float16", "cuda"),
        ("turbo", "int8", "cuda"),
        ("distil-large-v3", "float16", "cuda"),
        ("distil-large-v3", "int8", "cuda"),
        ("small", "float32", "cpu"),
        ("small", "int8", "cpu"),
    ],
)
def test_formula_reproduces_published_figures(model: str, compute_type: str, kind: str) -> None:
    table = MEMORY_NEED_MB if kind == "cuda" else CPU_MEMORY_NEED_MB
    published = table[(model, compute_type)]
    spec = MODEL_SPECS[model]
    estimate = estimate_need(spec.params_m, spec.d_model, compute_type, kind)  # type: ignore[arg-type]
    assert abs(estimate.base_mb - published.base_mb) / published.base_mb < 0.15
    assert abs(estimate.per_item_mb - published.per_item_mb) / published.per_item_mb < 0.15


@pytest.mark.parametrize("compute_type", ["float16", "int8_float16", "int8", "float32"])
def test_bigger_models_need_more(compute_type: str) -> None:
    by_size = sorted(MODEL_SPECS, key=lambda m: MODEL_SPECS[m].params_m)
    needs = [estimate_need(MODEL_SPECS[m].params_m, MODEL_SPECS[m].d_model, compute_type, "cuda")
             for m in by_size]  # fmt: skip
    assert [n.base_mb for n in needs] == sorted(n.base_mb for n in needs)


def test_int8_needs_less_than_float16() -> None:
    for model in MODEL_SPECS:
        assert (
            need_mb(model, "int8").mb < need_mb(model, "float16").mb < need_mb(model, "float32").mb
        )


def test_aliases() -> None:
    assert need_mb("large", "float16") == need_mb("large-v3", "float16")
    assert need_mb("large-v3-turbo", "float16") == need_mb("turbo", "float16")
    assert need_mb("tiny.en", "int8").mb == need_mb("tiny", "int8").mb


def test_compute_type_normalization() -> None:
    assert normalize_compute_type("bfloat16", "cuda") == "float16"
    assert normalize_compute_type("default", "cuda") == "float16"
    assert normalize_compute_type("auto", "cuda") == "int8_float16"
    assert normalize_compute_type("float16", "cpu") == "float32"
    assert normalize_compute_type("int8_float16", "cpu") == "int8"
    assert normalize_compute_type("auto", "cpu") == "int8"
    assert normalize_compute_type(" Float ", "cpu") == "float32"
    assert need_mb("large-v3", "float16", kind="cpu") == need_mb("large-v3", "float32", kind="cpu")


@pytest.mark.parametrize(("compute_type", "kind"), [("fp16", "cuda"), ("int4", "cpu"),
                                                    ("int16", "cuda")])  # fmt: skip
def test_bad_compute_type(compute_type: str, kind: str) -> None:
    with pytest.raises(UsageError, match="compute type"):
        normalize_compute_type(compute_type, kind)  # type: ignore[arg-type]


def test_int16_on_cpu_is_estimated() -> None:
    need = need_mb("base", "int16", kind="cpu")
    assert need.source.startswith("estimated")


def test_bad_batch_size() -> None:
    with pytest.raises(UsageError, match="batch size"):
        need_mb("tiny", "int8", 0)


def test_unknown_model_guessed_from_name() -> None:
    need = need_mb("org/faster-whisper-large-v3-turbo-ct2", "float16")
    assert need.mb == need_mb("turbo", "float16").mb
    assert "taken as turbo" in need.source
    distil = need_mb("Systran/faster-distil-whisper-large-v3", "int8")
    assert distil.mb == need_mb("distil-large-v3", "int8").mb


def test_unknown_model_assumed_large() -> None:
    need = need_mb("/models/my-finetune", "float16")
    assert "assumed" in need.source
    assert need.mb >= need_mb("large-v3", "float16").mb * 0.95


def test_unknown_model_from_parameter_count() -> None:
    need = need_mb("/models/my-finetune", "float16", params_m=300)
    assert need.source.startswith("estimated")
    assert need_mb("small", "float16").mb < need.mb < need_mb("medium", "float16").mb
    with pytest.raises(UsageError):
        need_mb("/models/x", "float16", params_m=0)


# --- measurements ---------------------------------------------------------------------------


def test_measured_figure_overrides(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "memory.json"
    assert load_measurements(path) == {}
    key = measurement_key("large", "float16", 8)
    assert key == "cuda/large-v3/float16/b8"
    record_measurement(path, key, 7000, "peak on H100, 2026-01-01")
    measured = load_measurements(path)
    assert measured == {key: MemoryNeed(7000, "peak on H100, 2026-01-01")}
    exact = need_mb("large-v3", "float16", 8, measured=measured)
    assert exact == MemoryNeed(7000, "measured: peak on H100, 2026-01-01")
    # other batch sizes still use the table
    assert need_mb("large-v3", "float16", 4, measured=measured).mb == 4521 + 3 * 224


def test_measured_single_batch_plus_increment(tmp_path: Path) -> None:
    path = tmp_path / "memory.json"
    record_measurement(path, measurement_key("large-v3", "float16", 1), 5000, "measured")
    record_measurement(path, measurement_key("large-v3", "float16", 1), 5100, "again")
    measured = load_measurements(path)
    assert len(measured) == 1  # the latest wins
    need = need_mb("large-v3", "float16", 3, measured=measured)
    assert need.mb == 5100 + 2 * 224
    assert "batch size 1" in need.source
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert not list(tmp_path.glob(".memory.json.*"))  # no temporary file left behind


@pytest.mark.parametrize("text", ["{", "[]", '{"measurements": {"k": {"mb": "x"}}}', "{}"])
def test_corrupt_measurements_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "memory.json"
    path.write_text(text)
    with pytest.raises(UsageError, match="delete it"):
        load_measurements(path)


# --- the plan -------------------------------------------------------------------------------


def test_seed_plan() -> None:
    plan = plan_capacity(parse_fake_gpus(SEED), "large-v3", "float16", 1, OPTIONS, 8)
    by_id = {d.id: d for d in plan.devices}
    assert list(by_id) == ["cuda:0", "cuda:1", "cuda:2"]  # GPUs, so no CPU worker
    assert by_id["cuda:0"].slots == 8  # 65536 / 4521 = 14 fit, capped at max_slots
    assert "capped at 8" in by_id["cuda:0"].reason
    assert by_id["cuda:1"].slots == 7  # 32768 / 4521 = 7.2
    assert by_id["cuda:2"].slots == 0  # 1536 free, 1229 usable
    assert "4521 MiB" in by_id["cuda:2"].reason and "1229 MiB usable" in by_id["cuda:2"].reason
    assert all(d.need_mb == 4521 for d in plan.devices)
    assert plan.max_concurrent == 15


def test_seed_plan_with_batches() -> None:
    plan = plan_capacity(parse_fake_gpus(SEED), "large-v3", "float16", 8, OPTIONS, 8)
    assert [d.slots for d in plan.devices] == [8, 5, 0]  # need 4521 + 7 x 224 = 6089


def test_plan_json_shape() -> None:
    memory = SystemMemory(total_mb=65536, available_mb=60000)
    options = CapacityOptions(cpu=True)
    plan = plan_capacity(parse_fake_gpus(SEED), "large-v3", "float16", 1, options, 8, memory=memory)
    data = plan.to_json()
    assert set(data) == {"devices", "max_concurrent"}
    keys = {"id", "name", "kind", "memory_total_mb", "memory_free_mb", "need_mb", "slots",
            "reason"}  # fmt: skip
    for device in data["devices"]:  # type: ignore[attr-defined]
        assert set(device) - {"threads"} == keys
    assert [d["kind"] for d in data["devices"]] == ["cuda", "cuda", "cuda", "cpu"]  # type: ignore[attr-defined,index]
    assert data["max_concurrent"] == sum(d.slots for d in plan.devices)
    assert json.loads(json.dumps(data)) == data


def test_cpu_plan_when_no_gpu() -> None:
    plan = plan_capacity([], "base", "int8", 1, OPTIONS, 2)
    (cpu,) = plan.devices
    assert (cpu.id, cpu.kind, cpu.slots, cpu.threads) == ("cpu", "cpu", 2, 1)
    assert cpu.memory_total_mb is None and "not checked" in cpu.reason
    assert plan.max_concurrent == 2


@pytest.mark.parametrize(
    ("cores", "slots", "threads"),
    [(1, 1, 1), (4, 4, 1), (6, 3, 2), (8, 4, 2), (16, 8, 2), (32, 8, 4), (64, 8, 8)],
)
def test_cpu_slots_and_threads_from_cores(cores: int, slots: int, threads: int) -> None:
    memory = SystemMemory(total_mb=1 << 20, available_mb=1 << 20)
    (cpu,) = plan_capacity([], "base", "int8", 1, OPTIONS, cores, memory=memory).devices
    assert (cpu.slots, cpu.threads) == (slots, threads)


def test_cpu_plan_limited_by_ram() -> None:
    need = need_mb("small", "int8", kind="cpu").mb  # 1477
    memory = SystemMemory(total_mb=8192, available_mb=4000)  # 3200 usable: 2 workers
    (cpu,) = plan_capacity([], "small", "int8", 1, OPTIONS, 8, memory=memory).devices
    assert cpu.need_mb == need
    assert (cpu.slots, cpu.threads) == (2, 4)  # all 8 cores spread over the 2 workers
    tiny_ram = SystemMemory(total_mb=2048, available_mb=1000)
    (cpu,) = plan_capacity([], "small", "int8", 1, OPTIONS, 8, memory=tiny_ram).devices
    assert cpu.slots == 0 and "needs 1477 MiB" in cpu.reason


def test_cpu_threads_given() -> None:
    options = CapacityOptions(cpu_threads=3)
    (cpu,) = plan_capacity([], "base", "int8", 1, options, 16).devices
    assert (cpu.slots, cpu.threads) == (5, 3)


def test_cpu_off_and_nothing_usable() -> None:
    plan = plan_capacity([], "base", "int8", 1, CapacityOptions(cpu=False), 8)
    assert plan.devices == () and plan.max_concurrent == 0
    with pytest.raises(DeviceError, match="no GPU"):
        ensure_usable(plan)
    full = plan_capacity(parse_fake_gpus("24/1.5"), "large-v3", "float16", 1, OPTIONS, 8)
    with pytest.raises(DeviceError, match=r"cuda:0: one worker needs 4521 MiB"):
        ensure_usable(full)
    ensure_usable(plan_capacity(parse_fake_gpus(SEED), "large-v3", "float16", 1, OPTIONS, 8))


def test_min_slots_raises_the_count() -> None:
    options = CapacityOptions(min_slots=3, max_slots=8)
    plan = plan_capacity(parse_fake_gpus("16/12"), "large-v3", "float16", 1, options, 8)
    (gpu,) = plan.devices
    assert gpu.slots == 3 and "min_slots" in gpu.reason  # 2 fit in 9830 MiB


@pytest.mark.parametrize(
    "kwargs", [{"margin": 1.0}, {"margin": -0.1}, {"min_slots": 0}, {"min_slots": 9},
               {"cpu_threads": 0}],
)  # fmt: skip
def test_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        CapacityOptions(**kwargs)  # type: ignore[arg-type]


def test_measured_figures_reach_the_plan() -> None:
    measured = {measurement_key("large-v3", "float16", 1): MemoryNeed(8000, "measured")}
    plan = plan_capacity(parse_fake_gpus(SEED), "large-v3", "float16", 1, OPTIONS, 8,
                         measured=measured)  # fmt: skip
    assert [d.slots for d in plan.devices] == [8, 4, 0]


@given(
    free=st.integers(0, 200_000),
    need=st.integers(100, 20_000),
    margin=st.floats(0, 0.9),
    min_slots=st.integers(1, 4),
    extra=st.integers(0, 8),
)
def test_gpu_slots_invariants(
    free: int, need: int, margin: float, min_slots: int, extra: int
) -> None:
    options = CapacityOptions(margin=margin, min_slots=min_slots, max_slots=min_slots + extra)
    entry = _entry(need, options.max_slots)
    planned = replan_device(entry, free, options, held_mb=0)
    usable = free * (1 - margin)
    if usable < need:
        assert planned.slots == 0
    else:
        assert options.min_slots <= planned.slots <= options.max_slots
        if planned.slots > options.min_slots:
            assert planned.slots * need <= usable


# --- re-planning and running out of memory --------------------------------------------------


def _entry(need: int, cap: int = 8) -> DevicePlan:
    return DevicePlan("cuda:0", "Fake GPU 0", "cuda", 81920, 81920, need, 8, 1, "", cap)


def test_replan_from_fresh_reading() -> None:
    plan = plan_capacity(parse_fake_gpus(SEED), "large-v3", "float16", 1, OPTIONS, 8)
    gpu1 = plan.devices[1]
    assert gpu1.slots == 7
    # Another process took memory: 20 GiB free, none held by us.
    fewer = replan_device(gpu1, 20480, OPTIONS, held_mb=0)
    assert (fewer.slots, fewer.memory_free_mb) == (3, 20480)
    # Our 7 workers run and hold their memory: the reading shows less free, but the count holds.
    held = 7 * gpu1.need_mb
    same = replan_device(gpu1, 40960 - held, OPTIONS, held_mb=held)
    assert same.slots == 7 and "held by running workers" in same.reason
    # Freed up: the count grows, up to the cap.
    assert replan_device(gpu1, 81920, OPTIONS, held_mb=0).slots == 8
    # No room at all.
    none = replan_device(gpu1, 100, OPTIONS, held_mb=0)
    assert none.slots == 0 and "needs" in none.reason
    updated = plan.with_device(fewer)
    assert updated.max_concurrent == 8 + 3 + 0
    with pytest.raises(ValueError):
        replan_device(gpu1, -1, OPTIONS, held_mb=0)


def test_replan_cpu_keeps_core_cap() -> None:
    memory = SystemMemory(total_mb=65536, available_mb=65536)
    (cpu,) = plan_capacity([], "base", "int8", 1, OPTIONS, 4, memory=memory).devices
    assert (cpu.slots, cpu.slot_cap) == (4, 4)
    assert replan_device(cpu, 1 << 20, OPTIONS, held_mb=0).slots == 4
    assert replan_device(cpu, 2000, OPTIONS, held_mb=0).slots == 1


def test_with_device_unknown_id() -> None:
    plan = CapacityPlan(devices=())
    with pytest.raises(ValueError):
        plan.with_device(_entry(1000))


@pytest.mark.parametrize(
    ("slots", "batch", "action", "new_slots", "new_batch"),
    [
        (3, 8, OomAction.DROP_SLOT, 2, 8),
        (2, 1, OomAction.DROP_SLOT, 1, 1),
        (1, 8, OomAction.HALVE_BATCH, 1, 4),
        (1, 3, OomAction.HALVE_BATCH, 1, 1),
        (1, 1, OomAction.GIVE_UP, 0, 1),
    ],
)
def test_shrink_after_oom(
    slots: int, batch: int, action: OomAction, new_slots: int, new_batch: int
) -> None:
    decision = shrink_after_oom(slots, batch)
    assert (decision.action, decision.slots, decision.batch_size) == (action, new_slots, new_batch)
    assert decision.reason


def test_shrink_after_oom_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        shrink_after_oom(0, 1)


# --- display --------------------------------------------------------------------------------


def test_format_plan() -> None:
    memory = SystemMemory(total_mb=65536, available_mb=60000)
    plan = plan_capacity(parse_fake_gpus(SEED), "large-v3", "float16", 1,
                         CapacityOptions(cpu=True), 8, memory=memory)  # fmt: skip
    text = format_plan(plan)
    lines = text.splitlines()
    assert lines[0] == "model large-v3, compute type float16, batch size 1, margin 20%"
    assert lines[1].split() == ["DEVICE", "NAME", "TOTAL", "FREE", "NEED", "SLOTS", "THREADS",
                                "REASON"]  # fmt: skip
    for device in ("cuda:0", "cuda:1", "cuda:2", "cpu"):
        assert any(line.startswith(device) for line in lines)
    assert f"max concurrent workers: {plan.max_concurrent}" in text
    assert "#1030" in text  # where the GPU need comes from
    assert "(no device)" in format_plan(CapacityPlan(devices=()))
