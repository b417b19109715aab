"""``whisper-subs bench``: faster-whisper's two paths and ours, side by side on the same audio.

Each contender loads its model before the clock starts and gets the same decoded audio, model,
compute type and CPU threads in total. Printed: seconds, x-realtime, WER (with ``--ref``) and
our speed as a ratio of each baseline's, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .errors import UsageError
from .media import decode_audio
from .models import resolve_model
from .pipeline import PipelineOptions, Transcriber
from .pool import WorkerPool
from .types import SAMPLE_RATE
from .workers import WorkerOptions, compute_type_for, plan_workers

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BenchResult:
    name: str
    seconds: float
    x_realtime: float
    wer: float | None
    segments: int
    text: str


def normalize_text(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w' ]+", " ", text)
    return " ".join(text.split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over reference length (normalised text)."""
    ref, hyp = normalize_text(reference).split(), normalize_text(hypothesis).split()
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1] / max(1, len(ref))


def _timed(name: str, audio_s: float, ref: str | None, run: Callable[[], list[str]]) -> BenchResult:
    started = time.perf_counter()
    texts = run()
    seconds = time.perf_counter() - started
    text = " ".join(t.strip() for t in texts)
    wer = word_error_rate(ref, text) if ref is not None else None
    result = BenchResult(name, seconds, audio_s / seconds, wer, len(texts), text)
    log.info(
        "%s: %.1f s, %.1fx realtime%s",
        name,
        seconds,
        result.x_realtime,
        "" if wer is None else f", WER {wer:.2%}",
    )
    return result


def run_bench(
    args: argparse.Namespace, options: PipelineOptions, worker_options: WorkerOptions
) -> int:
    if args.file is None:
        raise UsageError("bench needs a media FILE (or --simulate)")
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - {"sequential", "batched", "ours"}
    if unknown:
        raise UsageError(f"--only: unknown {', '.join(sorted(unknown))}")
    ref = args.ref.read_text() if args.ref is not None else None
    audio = decode_audio(args.file)
    audio_s = audio.size / SAMPLE_RATE
    model = resolve_model(args.model)
    plan, slots = plan_workers(model, worker_options)
    threads = sum(d.slots * d.threads for d in plan.devices if d.kind == "cpu") or None
    kind = "cuda" if any(d.kind == "cuda" for d in plan.devices) else "cpu"
    compute_type = compute_type_for(kind, worker_options.compute_type)
    decode = options.decode
    results: list[BenchResult] = []

    if only & {"sequential", "batched"}:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        fw = WhisperModel(
            model.location, device=kind, compute_type=compute_type, cpu_threads=threads or 0
        )
        common = {
            "language": decode.language,
            "task": decode.task,
            "beam_size": decode.beam_size,
            "initial_prompt": decode.initial_prompt,
        }
        if "sequential" in only:
            results.append(
                _timed(
                    "faster-whisper sequential",
                    audio_s,
                    ref,
                    lambda: [s.text for s in fw.transcribe(audio, vad_filter=True, **common)[0]],
                )
            )
        if "batched" in only:
            batched = BatchedInferencePipeline(fw)
            results.append(
                _timed(
                    "faster-whisper batched",
                    audio_s,
                    ref,
                    lambda: [s.text for s in batched.transcribe(audio, batch_size=8, **common)[0]],
                )
            )
        del fw

    if "ours" in only:
        with WorkerPool(slots) as pool:
            pool.wait_ready()
            transcriber = Transcriber(pool, options)
            results.append(
                _timed(
                    "whisper-subs",
                    audio_s,
                    ref,
                    lambda: [s.text for s in transcriber.transcribe(np.asarray(audio)).segments],
                )
            )
            loads = pool.status().model_loads

    ours = next((r for r in results if r.name == "whisper-subs"), None)
    ratios = {
        f"vs {r.name}": r.seconds / ours.seconds
        for r in results
        if ours is not None and r is not ours
    }
    if args.json:
        sys.stdout.write(
            json.dumps(
                {
                    "file": str(args.file),
                    "audio_s": audio_s,
                    "model": args.model,
                    "compute_type": compute_type,
                    "threads": threads,
                    "workers": plan.max_concurrent,
                    "results": [
                        {k: v for k, v in asdict(r).items() if k != "text"} for r in results
                    ],
                    "speedup": ratios,
                },
                indent=1,
            )
            + "\n"
        )
        return 0
    lines = [
        f"{args.file}: {audio_s:.1f} s of audio; model {args.model} {compute_type}, "
        f"{threads} CPU thread(s) for each contender"
    ]
    for r in results:
        wer = "" if r.wer is None else f"  WER {r.wer:6.2%}"
        lines.append(
            f"  {r.name:28s} {r.seconds:7.1f} s  {r.x_realtime:6.1f}x realtime{wer}"
            f"  {r.segments} segments"
        )
    if ours is not None:
        lines.append(f"  whisper-subs: {plan.max_concurrent} worker(s), {loads} model load(s)")
    for name, ratio in ratios.items():
        lines.append(f"  speed-up {name}: {ratio:.2f}x")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
