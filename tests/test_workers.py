from __future__ import annotations

from whisper_subs.capacity import CapacityOptions, plan_capacity
from whisper_subs.devices import parse_fake_gpus
from whisper_subs.workers import size_for_input


def gpu_plan() -> object:
    gpus = parse_fake_gpus("80/80,80/40")
    return plan_capacity(gpus, "large-v3", "float16", 1, CapacityOptions(), 16)


def test_long_runs_keep_the_whole_plan() -> None:
    plan = gpu_plan()
    sized, why = size_for_input(plan, 3600.0, 300.0, 16)
    assert sized == plan and "full plan" in why


def test_a_short_file_uses_one_device_and_few_workers() -> None:
    plan = gpu_plan()
    sized, why = size_for_input(plan, 60.0, 300.0, 16)
    assert [d.slots for d in sized.devices] == [1, 0]
    assert "cuda:0" in why and "60 s" in why


def test_a_short_file_on_the_cpu_gives_its_cores_to_fewer_workers() -> None:
    plan = plan_capacity([], "base", "int8", 1, CapacityOptions(), 8)
    assert plan.max_concurrent > 1
    sized, _ = size_for_input(plan, 11.0, 300.0, 8)
    (cpu,) = sized.devices
    assert cpu.slots == 1 and cpu.threads == 8
