"""bench --simulate: the pure model, the workload, and a short run of the real pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shared_file
from whisper_subs.chunking import ChunkOptions
from whisper_subs.cli import build_parser, main
from whisper_subs.errors import UsageError
from whisper_subs.simulate import (
    SimulationOptions,
    draw_workload,
    ideal_makespan,
    model_pull,
    model_round_robin,
    real_chunk_lengths,
    run_simulation,
    synthetic_chunk_lengths,
)
from whisper_subs.types import SAMPLE_RATE

pytestmark = pytest.mark.timeout(60)


def test_ideal_is_work_over_speed_or_the_longest_chunk() -> None:
    assert ideal_makespan([10, 10, 10, 10], [1, 1]) == 20
    assert ideal_makespan([30, 1, 1], [1, 1, 1, 1]) == 30  # one chunk is the bound
    assert ideal_makespan([30, 30], [0.5, 1, 1]) == 30  # the fastest device takes the longest
    assert ideal_makespan([], [1]) == 0


def test_pull_model_longest_first() -> None:
    # Longest first on 2 equal devices: 9 | 7, then 5 -> the one free at 7, 3 -> at 9 ...
    assert model_pull([3, 9, 5, 7], [1, 1]) == 12
    # A half-speed device takes fewer chunks: it never holds the tail for long.
    assert model_pull([4] * 6, [1, 0.5]) == 16


def test_round_robin_model_ignores_speed_and_length() -> None:
    assert model_round_robin([9, 1, 9, 1], [1, 1]) == 18  # device 0 got both long chunks
    assert model_round_robin([4] * 6, [1, 0.5]) == 24  # the slow device gets half the chunks


def test_tail_duplication_can_only_help() -> None:
    # A slow device takes the last chunk; an idle fast one can finish a copy first.
    durations, speeds = [10, 10, 10], [1, 1, 0.25]
    assert model_pull(durations, speeds) == 40
    assert model_pull(durations, speeds, duplicate_tail=True) == 20


@settings(max_examples=200, deadline=None)
@given(
    durations=st.lists(st.floats(0.5, 30), min_size=1, max_size=60),
    speeds=st.lists(st.sampled_from([0.25, 0.5, 1.0]), min_size=1, max_size=8),
)
def test_models_never_beat_the_ideal(durations: list[float], speeds: list[float]) -> None:
    ideal = ideal_makespan(durations, speeds)
    pull = model_pull(durations, speeds)
    duplicated = model_pull(durations, speeds, duplicate_tail=True)
    assert ideal <= duplicated * (1 + 1e-9)
    assert duplicated <= pull * (1 + 1e-9)
    assert ideal <= model_round_robin(durations, speeds) * (1 + 1e-9)


def test_draw_workload_adds_up_and_repeats_with_a_seed() -> None:
    lengths = [20 * SAMPLE_RATE, 28 * SAMPLE_RATE, 30 * SAMPLE_RATE]
    drawn = draw_workload(lengths, 600.0, seed=3)
    assert sum(drawn) == 600 * SAMPLE_RATE
    assert all(n in lengths for n in drawn[:-1]) and 0 < drawn[-1] <= 30 * SAMPLE_RATE
    assert drawn == draw_workload(lengths, 600.0, seed=3)
    assert drawn != draw_workload(lengths, 600.0, seed=4)
    with pytest.raises(ValueError, match="no chunk lengths"):
        draw_workload([], 10.0)


def test_synthetic_lengths_follow_the_chunking_options() -> None:
    lengths = synthetic_chunk_lengths(ChunkOptions(max_chunk_s=30, min_chunk_s=24), seed=1)
    seconds = [n / SAMPLE_RATE for n in lengths.samples]
    assert all(1 <= s <= 30 for s in seconds)
    share_long = sum(s >= 24 for s in seconds) / len(seconds)
    assert 0.8 < share_long < 0.97
    assert "synthetic" in lengths.source


def test_options_are_checked() -> None:
    with pytest.raises(UsageError, match="--devices"):
        SimulationOptions(devices=0)
    with pytest.raises(UsageError, match="--slow-device-factor"):
        SimulationOptions(slow_device_factor=0.5)
    with pytest.raises(UsageError, match="--audio-minutes"):
        SimulationOptions(audio_minutes=0)
    options = SimulationOptions(devices=3, slow_device_factor=2)
    assert options.speeds == (0.5, 1.0, 1.0)
    assert options.target_efficiency == 0.90
    assert SimulationOptions().target_efficiency == 0.95


def test_real_chunk_lengths_come_from_vad_on_the_test_data(tmp_path: Path) -> None:
    # A small test-data folder (links to three shared clips) keeps this quick; the CLI reads all.
    clips = ["openai-whisper/jfk.flac", "faster-whisper/multilingual.mp3", "lhotse/LJ002-0020.wav"]
    rows = []
    for relative in clips:
        link = tmp_path / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(shared_file(relative))
        rows.append(json.dumps({"file": relative, "language": "en"}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    lengths = real_chunk_lengths(tmp_path)
    seconds = [n / SAMPLE_RATE for n in lengths.samples]
    assert 2 <= len(seconds) <= 5  # 76 s of speech: a few chunks
    assert max(seconds) <= ChunkOptions().max_chunk_s
    assert 60 < sum(seconds) < 77
    assert lengths.source.startswith("VAD chunks of 3 clips joined")


@pytest.mark.timeout(120)
def test_short_simulation_on_the_real_pool() -> None:
    options = SimulationOptions(
        devices=2, slow_device_factor=2.0, audio_minutes=3.0, target_ideal_s=1.5, seed=5
    )
    report = run_simulation(options)
    data = report.to_json()
    assert json.loads(json.dumps(data)) == data
    for key in ("efficiency", "round_robin_efficiency", "makespan_s", "ideal_s"):
        assert isinstance(data[key], float)
    assert data["audio_s"] == pytest.approx(180.0)
    assert sum(data["chunks_per_device"]) == data["chunks"]
    assert sum(data["round_robin_chunks_per_device"]) == data["chunks"]
    # The real makespans cannot beat the ideal; the slow device gets fewer chunks under pull.
    assert report.pull.makespan_s >= report.ideal_s * 0.99
    assert report.round_robin is not None
    assert report.round_robin.makespan_s >= report.ideal_s * 0.99
    slow, fast = data["chunks_per_device"]
    assert slow < fast
    assert "pull (ours)" in report.format() and "round-robin" in report.format()


def test_cli_flags_for_simulate() -> None:
    args = build_parser().parse_args(
        ["bench", "--simulate", "--devices", "8", "--slow-device-factor", "2",
         "--audio-minutes", "30", "--json"]
    )  # fmt: skip
    assert (args.simulate, args.devices, args.slow_device_factor) == (True, "8", 2.0)
    assert (args.audio_minutes, args.json, args.file) == (30.0, True, None)


def test_cli_rejects_a_device_list_with_simulate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--simulate", "--devices", "0,1"]) == 2
    assert main(["bench", "--simulate", "--devices", "0"]) == 2
