"""Progress of a run: a bar on a terminal, plain log lines otherwise, and the end summary."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Summary:
    inputs: int
    failed_inputs: int
    failed_chunks: int
    audio_s: float
    wall_s: float
    workers: int
    model_loads: int
    worker_deaths: int
    retries: int

    @property
    def x_realtime(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def format(self) -> str:
        return (
            f"{self.inputs} input(s), {self.failed_inputs} failed; audio {self.audio_s:.1f} s in "
            f"{self.wall_s:.1f} s wall = {self.x_realtime:.1f}x realtime; "
            f"{self.workers} worker(s), "
            f"{self.model_loads} model load(s); {self.failed_chunks} chunk(s) failed, "
            f"{self.retries} retried, {self.worker_deaths} worker(s) replaced"
        )


class Progress:
    """Counts chunks as they finish; draws a tqdm bar on a TTY, logs every ~10 s otherwise."""

    def __init__(
        self,
        stream: TextIO | None = None,
        status: Callable[[], dict[str, Any]] | None = None,
        enabled: bool = True,
    ) -> None:
        self.stream = stream or sys.stderr
        self.total = 0
        self.done = 0
        self.audio_s = 0.0
        self.started = time.perf_counter()
        self._status = status
        self._lock = threading.Lock()
        self._last_line = 0.0
        self._bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=0, unit="chunk", file=self.stream, dynamic_ncols=True)
        self._enabled = enabled

    def __call__(self, kind: str, data: dict[str, object]) -> None:
        with self._lock:
            if kind == "file_planned":
                self.total += int(data["chunks"])  # type: ignore[call-overload]
                if self._bar is not None:
                    self._bar.total = self.total
                    self._bar.refresh()
            elif kind == "chunk_done":
                self.done += 1
                self.audio_s += float(data["audio_s"])  # type: ignore[arg-type]
                self._show()

    def _show(self) -> None:
        elapsed = max(1e-6, time.perf_counter() - self.started)
        speed = self.audio_s / elapsed
        extra = ""
        if self._status is not None:
            s = self._status()
            extra = f" active {s['active']}/{s['max_concurrent']} queued {s['queued']}"
        if self._bar is not None:
            self._bar.set_postfix_str(f"{speed:.1f}x realtime{extra}", refresh=False)
            self._bar.update(1)
        elif self._enabled and (elapsed - self._last_line >= 10 or self.done == self.total):
            self._last_line = elapsed
            log.info("chunks %d/%d, %.1fx realtime%s", self.done, self.total, speed, extra)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
