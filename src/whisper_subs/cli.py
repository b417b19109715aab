"""The ``whisper-subs`` command line: parse once, read the environment once, call the core."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .chunking import ChunkOptions
from .cues import CUE_FLAGS
from .engine import TASKS, DecodeOptions
from .errors import DeviceError, ModelNotFoundError, UsageError, WhisperSubsError
from .formats import parse_formats
from .languages import normalize_language
from .vad import VadOptions

log = logging.getLogger("whisper_subs")

FAKE_GPUS_ENV = "WHISPER_SUBS_FAKE_GPUS"
FAKE_ENGINE_ENV = "WHISPER_SUBS_FAKE_ENGINE"  # serve only, for tests: the FakeEngine's speed
API_KEY_ENV = "WHISPER_SUBS_API_KEY"


def _out(text: str, stream: object = None) -> None:
    (stream or sys.stdout).write(text + "\n")  # type: ignore[attr-defined]


# -- parser ------------------------------------------------------------------------------------


def _add_backend_args(g: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    g.add_argument(
        "--backend",
        default="local",
        choices=("local", "ray"),
        help="local worker processes (default) or Ray actors over a cluster",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        help="with --backend ray: auto (a running cluster) or ray://host:port "
        "(default: RAY_ADDRESS, else a local Ray)",
    )


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and devices")
    _add_backend_args(g)
    g.add_argument(
        "--model",
        default="base",
        help="base (default, embedded), tiny.en (embedded), a hub name such as "
        "large-v3 or large-v3-turbo (needs a network), or a CTranslate2 folder",
    )
    g.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="auto: every GPU with room, else the CPU (default)",
    )
    g.add_argument(
        "--devices", default=None, help="which GPUs: 0,1 or cuda:0,1 or auto (default: every GPU)"
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        help="workers per device (default: from free memory / CPU cores)",
    )
    g.add_argument("--threads", type=int, default=None, help="CPU threads per worker")
    g.add_argument(
        "--compute-type",
        default="auto",
        help="int8, int8_float16, float16, float32 (auto: int8 on CPU, float16 on GPU)",
    )
    g.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="chunks per engine call (default: 2 on CPU, 8 on GPU)",
    )
    g.add_argument(
        "--margin",
        type=float,
        default=0.2,
        help="share of free GPU memory left unused (default 0.2)",
    )
    g.add_argument(
        "--max-workers-per-device",
        type=int,
        default=8,
        dest="max_slots",
        help="cap on workers per device (default 8)",
    )


def _add_decode_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument(
        "--language",
        default=None,
        help="language code (en, de, zh, zh-TW, ...); default: detected per chunk",
    )
    g.add_argument(
        "--task", default="transcribe", choices=TASKS, help="transcribe, or translate to English"
    )
    g.add_argument("--beam-size", type=int, default=5)
    g.add_argument("--initial-prompt", default=None, help="text to prime every chunk with")
    g.add_argument(
        "--vad-threshold",
        type=float,
        default=0.5,
        help="speech probability threshold of Silero VAD (default 0.5)",
    )
    g.add_argument(
        "--min-chunk-s",
        type=float,
        default=ChunkOptions().min_chunk_s,
        help="cut long speech where at least this much is kept (default %(default)s)",
    )
    g.add_argument(
        "--max-chunk-s",
        type=float,
        default=ChunkOptions().max_chunk_s,
        help="longest chunk, at most 30 (default %(default)s)",
    )


def _add_cue_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("subtitles (defaults per language: Netflix rules)")
    g.add_argument(
        "--cue-style",
        default="words",
        choices=("words", "segments"),
        help="words: readable cues from word times (default); segments: one per segment",
    )
    g.add_argument("--max-line-chars", type=float, default=None, help="characters per line")
    g.add_argument("--max-lines", type=int, default=None, help="lines per cue")
    g.add_argument("--max-cps", type=float, default=None, help="reading speed, characters/s")
    g.add_argument("--min-cue-s", type=float, default=None, help="shortest cue")
    g.add_argument("--max-cue-s", type=float, default=None, help="longest cue")
    g.add_argument("--min-gap-s", type=float, default=None, help="gap between cues")
    g.add_argument(
        "--chinese-script",
        default=None,
        choices=("simplified", "traditional", "auto"),
        help="convert Chinese output (auto: follow --language zh-TW / zh-CN)",
    )
    g.add_argument("--keep-all", action="store_true", help="turn the hallucination guards off")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whisper-subs",
        description="Long audio and video to readable subtitles with Whisper, over every GPU or "
        "CPU core.",
    )
    parser.add_argument("--version", action="version", version=f"whisper-subs {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only")
    # The same two flags are accepted after the command too (whisper-subs transcribe -q ...).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more logging"
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="errors only"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "transcribe", parents=[common], help="media files or folders to subtitle files"
    )
    t.add_argument("inputs", nargs="+", metavar="INPUT", help="media files or folders")
    t.add_argument(
        "-f",
        "--format",
        default="srt",
        help="comma-separated: srt, vtt, json, txt, tsv (default srt)",
    )
    t.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=None,
        help="where to write <stem>.<ext> (default: next to each input)",
    )
    t.add_argument(
        "--multi-device-min-s",
        type=float,
        default=300.0,
        help="below this much audio, start only the workers it pays to load (default 300)",
    )
    _add_model_args(t)
    _add_decode_args(t)
    _add_cue_args(t)

    b = sub.add_parser(
        "bench", parents=[common], help="time whisper-subs against faster-whisper on one file"
    )
    b.add_argument("file", nargs="?", type=Path, help="media file (not with --simulate)")
    b.add_argument("--ref", type=Path, default=None, help="reference text file, for WER")
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.add_argument(
        "--only",
        default="sequential,batched,ours",
        help="which to run: sequential, batched, ours (default all)",
    )
    s = b.add_argument_group("simulation (the scaling proof: real pool, fake engine)")
    s.add_argument(
        "--simulate",
        action="store_true",
        help="run the real worker pool over --devices N fake devices that sleep in "
        "proportion to chunk length; compare with round-robin",
    )
    s.add_argument(
        "--slow-device-factor",
        type=float,
        default=1.0,
        help="with --simulate: one device is this many times slower (2 = half as fast)",
    )
    s.add_argument(
        "--audio-minutes",
        type=float,
        default=60.0,
        help="with --simulate: minutes of audio to simulate (default 60)",
    )
    _add_model_args(b)
    _add_decode_args(b)

    d = sub.add_parser(
        "devices", parents=[common], help="show the devices and the workers each would get"
    )
    d.add_argument("--model", default="base")
    d.add_argument("--compute-type", default="auto")
    d.add_argument("--batch-size", type=int, default=4)
    d.add_argument("--margin", type=float, default=0.2)
    d.add_argument("--json", action="store_true")
    _add_backend_args(d)

    sv = sub.add_parser(
        "serve", parents=[common], help="run the HTTP API (and web UI) over one warm worker pool"
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    sv.add_argument(
        "--data-dir",
        type=Path,
        default=Path("whisper-subs-data"),
        help="jobs database, inputs and outputs (default ./whisper-subs-data)",
    )
    sv.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Bearer KEY' on /v1 (default: ${API_KEY_ENV})",
    )
    sv.add_argument(
        "--max-upload-mb",
        type=float,
        default=1024.0,
        help="largest upload or download accepted (default 1024)",
    )
    sv.add_argument(
        "--retention-hours",
        type=float,
        default=168.0,
        help="delete inputs of finished jobs after this long, outputs are kept; "
        "0 keeps them forever (default 168)",
    )
    sv.add_argument(
        "--lease-s",
        type=float,
        default=60.0,
        help="job lease; jobs of a dead server elsewhere are requeued after it (default 60)",
    )
    sv.add_argument(
        "--max-running-jobs",
        type=int,
        default=None,
        help="jobs transcribed at once (default: 2 per worker, at least 4)",
    )
    _add_model_args(sv)

    c = sub.add_parser(
        "check", parents=[common], help="list subtitle rule violations in an SRT file"
    )
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
        decode=DecodeOptions(
            language=language,
            task=args.task,
            beam_size=args.beam_size,
            initial_prompt=args.initial_prompt,
        ),
        vad=VadOptions(threshold=args.vad_threshold),
        chunking=ChunkOptions(max_chunk_s=args.max_chunk_s, min_chunk_s=args.min_chunk_s),
        subtitles=SubtitleOptions(
            cue_style=getattr(args, "cue_style", "words"),
            cue_overrides=overrides,
            chinese_script=getattr(args, "chinese_script", None),
            language_tag=tag,
            keep_all=getattr(args, "keep_all", False),
        ),
    )


def _worker_options(args: argparse.Namespace):  # -> WorkerOptions
    from .workers import WorkerOptions

    return WorkerOptions(
        device=args.device,
        devices=args.devices,
        workers=args.workers,
        threads=args.threads,
        compute_type=args.compute_type,
        batch_size=args.batch_size,
        margin=args.margin,
        max_slots=args.max_slots,
        fake_gpus=os.environ.get(FAKE_GPUS_ENV),
    )


def cmd_transcribe(args: argparse.Namespace) -> int:
    from .backends import make_pool, plan_pool
    from .capacity import CapacityOptions
    from .devices import discover_gpus
    from .media import find_inputs, probe_duration
    from .models import resolve_model
    from .pipeline import Transcriber, output_writer
    from .progress import Progress, Summary
    from .replan import Replanner
    from .workers import plan_run

    formats = parse_formats(args.format)
    options = _pipeline_options(args)
    sources = list(find_inputs(args.inputs))
    if not sources:
        raise UsageError("no media files found in the inputs given")
    model = resolve_model(args.model)
    durations = [probe_duration(p) for p in sources]
    total_s = None if None in durations else sum(d or 0.0 for d in durations)
    plan, slots, why = plan_run(model, _worker_options(args), total_s, args.multi_device_min_s)
    for device in plan.devices:
        log.info("%s: %d worker(s): %s", device.id, device.slots, device.reason)
    started = time.perf_counter()
    failed_inputs = failed_chunks = 0
    audio_s = 0.0
    if args.backend == "ray":  # every node plans its own devices
        placed = plan_pool("ray", model, _worker_options(args), args.ray_address)
        slots, pool_kwargs, why = list(placed.slots), placed.pool_kwargs, "the cluster plan"
        log.info("workers:\n%s", placed.text)
    else:
        pool_kwargs = {}
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(make_pool(args.backend, slots, args.ray_address, **pool_kwargs))
        if args.backend == "local" and any(d.kind == "cuda" for d in plan.devices):
            # Free GPU memory is read again every 30 s: slots lost to OOM or to other
            # processes come back, within the plan's bounds.
            fake = os.environ.get(FAKE_GPUS_ENV)
            stack.enter_context(
                Replanner(
                    pool,
                    plan,
                    lambda: discover_gpus(fake),
                    CapacityOptions(margin=args.margin, max_slots=args.max_slots),
                ).start()
            )
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
                    log.error(
                        "%s: chunk %d (%.1f-%.1f s) failed: %s",
                        outcome.source,
                        error.chunk_index,
                        error.start,
                        error.end,
                        error.message,
                    )
                for path in outcome.outputs.values():
                    _out(str(path))
        finally:
            progress.close()
        status = pool.status()
    summary = Summary(
        inputs=len(sources),
        failed_inputs=failed_inputs,
        failed_chunks=failed_chunks,
        audio_s=audio_s,
        wall_s=time.perf_counter() - started,
        workers=status.max_concurrent,
        model_loads=status.model_loads,
        worker_deaths=status.worker_deaths,
        retries=status.retries,
    )
    if not args.quiet:
        _out(summary.format(), sys.stderr)
        _out(f"workers: {why}", sys.stderr)
    if failed_inputs:
        return 2
    return 1 if failed_chunks else 0


def cmd_devices(args: argparse.Namespace) -> int:
    from .backends import describe_devices

    text, data = describe_devices(
        args.backend,
        args.model,
        args.compute_type,
        args.batch_size,
        args.margin,
        ray_address=args.ray_address,
        fake_gpus=os.environ.get(FAKE_GPUS_ENV),
    )
    _out(json.dumps(data, indent=1) if args.json else text)
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
    if args.simulate:
        return _cmd_simulate(args)
    from .bench import run_bench

    return run_bench(args, _pipeline_options(args), _worker_options(args))


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import SimulationOptions, default_testdata, run_simulation

    if args.file is not None:
        raise UsageError(f"--simulate takes no media file (got {args.file})")
    try:
        devices = int(args.devices) if args.devices is not None else 4
    except ValueError:
        raise UsageError(
            f"with --simulate, --devices is a number of fake devices, got {args.devices!r}"
        ) from None
    pipeline = _pipeline_options(args)
    options = SimulationOptions(
        devices=devices,
        slow_device_factor=args.slow_device_factor,
        audio_minutes=args.audio_minutes,
        testdata=default_testdata(),
        vad=pipeline.vad,
        chunking=pipeline.chunking,
        backend=args.backend,
        ray_address=args.ray_address,
    )
    if options.testdata is None:
        log.warning("../shared/testdata not found: using synthetic chunk lengths")
    report = run_simulation(options)
    _out(json.dumps(report.to_json(), indent=1) if args.json else report.format())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .api import create_app
    from .engine import FakeBehaviour
    from .service import Settings

    fake = os.environ.get(FAKE_ENGINE_ENV)  # tests only: seconds of sleep per audio second
    try:
        fake_engine = FakeBehaviour(seconds_per_audio_s=float(fake)) if fake else None
    except ValueError as exc:
        raise UsageError(f"{FAKE_ENGINE_ENV} must be a number, got {fake!r}") from exc
    if fake_engine is not None:
        log.warning("%s is set: using the FAKE engine, not Whisper (tests only)", FAKE_ENGINE_ENV)
    settings = Settings(
        data_dir=args.data_dir,
        model=args.model,
        workers=_worker_options(args),
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        max_upload_mb=args.max_upload_mb,
        retention_s=args.retention_hours * 3600 if args.retention_hours > 0 else None,
        lease_s=args.lease_s,
        max_running_jobs=args.max_running_jobs,
        fake_engine=fake_engine,
        backend=args.backend,
        ray_address=args.ray_address,
    )
    app = create_app(settings)
    level = "warning" if args.quiet else ("debug" if args.verbose > 1 else "info")
    uvicorn.run(app, host=args.host, port=args.port, log_level=level, timeout_graceful_shutdown=10)
    return 0


COMMANDS = {
    "serve": cmd_serve,
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
