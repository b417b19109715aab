"""The ``whisper-subs`` command line: parse once, read the environment once, call the core."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .chunking import ChunkOptions
from .engine import TASKS, DecodeOptions
from .errors import DeviceError, ModelNotFoundError, UsageError, WhisperSubsError
from .formats import parse_formats
from .vad import VadOptions

log = logging.getLogger("whisper_subs")

FAKE_GPUS_ENV = "WHISPER_SUBS_FAKE_GPUS"
CUE_FLAGS = ("max_line_chars", "max_lines", "max_cps", "min_cue_s", "max_cue_s", "min_gap_s")


def _out(text: str, stream: object = None) -> None:
    (stream or sys.stdout).write(text + "\n")  # type: ignore[attr-defined]


def normalize_language(tag: str | None) -> tuple[str | None, str | None]:
    """``zh-TW`` -> (``zh``, ``zh-TW``): the code Whisper knows, and the tag as given."""
    if tag is None or tag.lower() in ("", "auto"):
        return None, None
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    code = tag.replace("_", "-").split("-")[0].lower()
    if code not in _LANGUAGE_CODES:
        raise UsageError(
            f"unknown language {tag!r}: give a Whisper language code such as en, de, zh or zh-TW "
            "(or auto)"
        )
    return code, tag


# -- parser ------------------------------------------------------------------------------------


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and devices")
    g.add_argument("--model", default="base",
                   help="base (default, embedded), tiny.en (embedded), a hub name such as "
                        "large-v3 or large-v3-turbo (needs a network), or a CTranslate2 folder")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: every GPU with room, else the CPU (default)")
    g.add_argument("--devices", default=None,
                   help="which GPUs: 0,1 or cuda:0,1 or auto (default: every GPU)")
    g.add_argument("--workers", type=int, default=None,
                   help="workers per device (default: from free memory / CPU cores)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads per worker")
    g.add_argument("--compute-type", default="auto",
                   help="int8, int8_float16, float16, float32 (auto: int8 on CPU, float16 on GPU)")
    g.add_argument("--batch-size", type=int, default=4, help="chunks per engine call (default 4)")
    g.add_argument("--margin", type=float, default=0.2,
                   help="share of free GPU memory left unused (default 0.2)")
    g.add_argument("--max-workers-per-device", type=int, default=8, dest="max_slots",
                   help="cap on workers per device (default 8)")  # fmt: skip


def _add_decode_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument("--language", default=None,
                   help="language code (en, de, zh, zh-TW, ...); default: detected per chunk")
    g.add_argument("--task", default="transcribe", choices=TASKS,
                   help="transcribe, or translate to English")
    g.add_argument("--beam-size", type=int, default=5)
    g.add_argument("--initial-prompt", default=None, help="text to prime every chunk with")
    g.add_argument("--vad-threshold", type=float, default=0.5,
                   help="speech probability threshold of Silero VAD (default 0.5)")
    g.add_argument("--min-chunk-s", type=float, default=ChunkOptions().min_chunk_s,
                   help="cut long speech where at least this much is kept (default %(default)s)")
    g.add_argument("--max-chunk-s", type=float, default=ChunkOptions().max_chunk_s,
                   help="longest chunk, at most 30 (default %(default)s)")  # fmt: skip


def _add_cue_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("subtitles (defaults per language: Netflix rules)")
    g.add_argument("--cue-style", default="words", choices=("words", "segments"),
                   help="words: readable cues from word times (default); segments: one per segment")
    g.add_argument("--max-line-chars", type=float, default=None, help="characters per line")
    g.add_argument("--max-lines", type=int, default=None, help="lines per cue")
    g.add_argument("--max-cps", type=float, default=None, help="reading speed, characters/s")
    g.add_argument("--min-cue-s", type=float, default=None, help="shortest cue")
    g.add_argument("--max-cue-s", type=float, default=None, help="longest cue")
    g.add_argument("--min-gap-s", type=float, default=None, help="gap between cues")
    g.add_argument("--chinese-script", default=None, choices=("simplified", "traditional", "auto"),
                   help="convert Chinese output (auto: follow --language zh-TW / zh-CN)")
    g.add_argument("--keep-all", action="store_true",
                   help="turn the hallucination guards off")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whisper-subs",
        description="Long audio and video to readable subtitles with Whisper, over every GPU or "
        "CPU core.",
    )
    parser.add_argument("--version", action="version", version=f"whisper-subs {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("transcribe", help="media files or folders to subtitle files")
    t.add_argument("inputs", nargs="+", metavar="INPUT", help="media files or folders")
    t.add_argument("-f", "--format", default="srt",
                   help="comma-separated: srt, vtt, json, txt, tsv (default srt)")
    t.add_argument("-o", "--output-dir", type=Path, default=None,
                   help="where to write <stem>.<ext> (default: next to each input)")  # fmt: skip
    _add_model_args(t)
    _add_decode_args(t)
    _add_cue_args(t)

    b = sub.add_parser("bench", help="time whisper-subs against faster-whisper on one file")
    b.add_argument("file", nargs="?", type=Path, help="media file (not with --simulate)")
    b.add_argument("--ref", type=Path, default=None, help="reference text file, for WER")
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.add_argument("--only", default="sequential,batched,ours",
                   help="which to run: sequential, batched, ours (default all)")
    _add_model_args(b)
    _add_decode_args(b)

    d = sub.add_parser("devices", help="show the devices and the workers each would get")
    d.add_argument("--model", default="base")
    d.add_argument("--compute-type", default="auto")
    d.add_argument("--batch-size", type=int, default=4)
    d.add_argument("--margin", type=float, default=0.2)
    d.add_argument("--json", action="store_true")

    c = sub.add_parser("check", help="list subtitle rule violations in an SRT file")
    c.add_argument("file", type=Path)
    c.add_argument("--language", default=None, help="language of the subtitles (default: en)")
    for flag in CUE_FLAGS:
        c.add_argument("--" + flag.replace("_", "-"), type=float, default=None)
    return parser


# -- commands ----------------------------------------------------------------------------------


def _pipeline_options(args: argparse.Namespace):  # -> PipelineOptions
    from .pipeline import PipelineOptions, SubtitleOptions

    language, tag = normalize_language(args.language)
    overrides = {k: getattr(args, k) for k in CUE_FLAGS if getattr(args, k, None) is not None}
    if "max_lines" in overrides:
        overrides["max_lines"] = int(overrides["max_lines"])
    if args.min_chunk_s > args.max_chunk_s:
        raise UsageError(
            f"--min-chunk-s ({args.min_chunk_s}) must not exceed --max-chunk-s ({args.max_chunk_s})"
        )
    return PipelineOptions(
        decode=DecodeOptions(language=language, task=args.task, beam_size=args.beam_size,
                             initial_prompt=args.initial_prompt),
        vad=VadOptions(threshold=args.vad_threshold),
        chunking=ChunkOptions(max_chunk_s=args.max_chunk_s, min_chunk_s=args.min_chunk_s),
        subtitles=SubtitleOptions(
            cue_style=getattr(args, "cue_style", "words"), cue_overrides=overrides,
            chinese_script=getattr(args, "chinese_script", None), language_tag=tag,
            keep_all=getattr(args, "keep_all", False),
        ),
    )  # fmt: skip


def _worker_options(args: argparse.Namespace):  # -> WorkerOptions
    from .workers import WorkerOptions

    return WorkerOptions(
        device=args.device, devices=args.devices, workers=args.workers, threads=args.threads,
        compute_type=args.compute_type, batch_size=args.batch_size, margin=args.margin,
        max_slots=args.max_slots, fake_gpus=os.environ.get(FAKE_GPUS_ENV),
    )  # fmt: skip


def cmd_transcribe(args: argparse.Namespace) -> int:
    from .media import find_inputs
    from .models import resolve_model
    from .pipeline import Transcriber, output_writer
    from .pool import WorkerPool
    from .progress import Progress, Summary
    from .workers import plan_workers

    formats = parse_formats(args.format)
    options = _pipeline_options(args)
    sources = list(find_inputs(args.inputs))
    if not sources:
        raise UsageError("no media files found in the inputs given")
    model = resolve_model(args.model)
    plan, slots = plan_workers(model, _worker_options(args))
    for device in plan.devices:
        log.info("%s: %d worker(s): %s", device.id, device.slots, device.reason)
    started = time.perf_counter()
    failed_inputs = failed_chunks = 0
    audio_s = 0.0
    with WorkerPool(slots) as pool:
        progress = Progress(status=lambda: pool.status().to_json(), enabled=not args.quiet)
        transcriber = Transcriber(pool, options, on_progress=progress)
        try:
            for outcome in transcriber.run(sources, output_writer(formats, args.output_dir)):
                if outcome.transcript is None:
                    failed_inputs += 1
                    log.error("%s", outcome.error)
                    continue
                t = outcome.transcript
                audio_s += t.duration
                if not t.segments and not t.errors:
                    log.warning("%s: no speech found; wrote empty subtitles", outcome.source)
                for error in t.errors:
                    failed_chunks += 1
                    log.error("%s: chunk %d (%.1f-%.1f s) failed: %s", outcome.source,
                              error.chunk_index, error.start, error.end, error.message)
                for path in outcome.outputs.values():
                    _out(str(path))
        finally:
            progress.close()
        status = pool.status()
    summary = Summary(
        inputs=len(sources), failed_inputs=failed_inputs, failed_chunks=failed_chunks,
        audio_s=audio_s, wall_s=time.perf_counter() - started,
        workers=status.max_concurrent, model_loads=status.model_loads,
        worker_deaths=status.worker_deaths, retries=status.retries,
    )  # fmt: skip
    if not args.quiet:
        _out(summary.format(), sys.stderr)
    if failed_inputs:
        return 2
    return 1 if failed_chunks else 0


def cmd_devices(args: argparse.Namespace) -> int:
    from .capacity import CapacityOptions, format_plan, plan_capacity
    from .devices import cpu_count, discover_gpus, system_memory
    from .workers import compute_type_for

    gpus = discover_gpus(os.environ.get(FAKE_GPUS_ENV))
    plan = plan_capacity(
        gpus, args.model, compute_type_for("cuda" if gpus else "cpu", args.compute_type),
        args.batch_size, CapacityOptions(margin=args.margin), cpu_count(), memory=system_memory(),
    )  # fmt: skip
    _out(json.dumps(plan.to_json(), indent=1) if args.json else format_plan(plan))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .check import check_srt, format_violation
    from .cues import cue_options_for

    overrides = {k: getattr(args, k) for k in CUE_FLAGS if getattr(args, k) is not None}
    if "max_lines" in overrides:
        overrides["max_lines"] = int(overrides["max_lines"])
    violations = check_srt(args.file, options=cue_options_for(args.language, **overrides))
    for violation in violations:
        _out(format_violation(violation))
    if not args.quiet:
        _out(f"{args.file}: {len(violations)} violation(s)", sys.stderr)
    return 1 if violations else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    return run_bench(args, _pipeline_options(args), _worker_options(args))


COMMANDS = {
    "transcribe": cmd_transcribe,
    "devices": cmd_devices,
    "check": cmd_check,
    "bench": cmd_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="whisper-subs: %(message)s", stream=sys.stderr)
    if args.verbose < 2:
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, ModelNotFoundError, DeviceError) as exc:
        log.error("%s", exc)
        return 2
    except WhisperSubsError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
