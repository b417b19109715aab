"""Shared fixtures: real test audio from ../shared/testdata, the embedded model, a real pool."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"


def shared_file(relative: str) -> Path:
    """A file of ../shared/testdata, or skip the test (with the reason) where it is absent."""
    path = TESTDATA / relative
    if not path.is_file():
        pytest.skip(f"test audio {path} is absent (../shared/testdata is not beside the repo)")
    return path


def manifest() -> dict[str, dict[str, object]]:
    path = TESTDATA / "manifest.jsonl"
    if not path.is_file():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {str(row["file"]): row for row in rows}


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, numbers as written: for WER."""
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return " ".join(text.split())


@pytest.fixture(scope="session")
def base_model() -> str:
    from whisper_subs.models import resolve_model

    return resolve_model("base").location


@pytest.fixture(scope="session")
def cpu_pool(base_model: str) -> Iterator[object]:
    """Two real-engine CPU workers (base, int8), shared by the end-to-end tests of a session."""
    from whisper_subs.engine import EngineSpec
    from whisper_subs.pool import DeviceSlots, WorkerPool

    spec = EngineSpec(base_model, "cpu", "int8", cpu_threads=1)
    with WorkerPool([DeviceSlots("cpu", 2, spec, {"OMP_NUM_THREADS": "1"}, batch_size=4)]) as pool:
        pool.wait_ready(120)
        yield pool
