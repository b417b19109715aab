"""Subtitle writers: one small function per format over a Transcript, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .errors import UsageError
from .types import Cue, Transcript


def _timestamp(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def cues_of(transcript: Transcript) -> Sequence[Cue]:
    if transcript.cues:
        return transcript.cues
    return [Cue(s.start, s.end, s.text.strip()) for s in transcript.segments]


def to_srt(transcript: Transcript) -> str:
    blocks = [
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{c.text}\n"
        for i, c in enumerate(cues_of(transcript), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(transcript: Transcript) -> str:
    blocks = [
        f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{c.text}\n"
        for c in cues_of(transcript)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_txt(transcript: Transcript) -> str:
    return "".join(c.text.replace("\n", " ") + "\n" for c in cues_of(transcript))


def to_tsv(transcript: Transcript) -> str:
    rows = ["start\tend\ttext"]
    rows += [
        f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{s.text.strip().replace(chr(9), ' ')}"
        for s in transcript.segments
    ]
    return "\n".join(rows) + "\n"


def to_json_data(transcript: Transcript) -> dict[str, Any]:
    return {
        "language": transcript.language,
        "duration": round(transcript.duration, 3),
        "segments": [
            {
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "words": [
                    {
                        "start": w.start,
                        "end": w.end,
                        "word": w.word,
                        "probability": round(w.probability, 4),
                    }
                    for w in s.words
                ],
            }
            for s in transcript.segments
        ],
        "cues": [{"start": c.start, "end": c.end, "text": c.text} for c in transcript.cues],
        "removed": [asdict(r) for r in transcript.removed],
        "errors": [asdict(e) for e in transcript.errors],
    }


def to_json(transcript: Transcript) -> str:
    return json.dumps(to_json_data(transcript), ensure_ascii=False, indent=1) + "\n"


WRITERS: dict[str, Callable[[Transcript], str]] = {
    "srt": to_srt,
    "vtt": to_vtt,
    "json": to_json,
    "txt": to_txt,
    "tsv": to_tsv,
}


def parse_formats(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [n for n in names if n not in WRITERS]
    if unknown or not names:
        raise UsageError(
            f"unknown format {', '.join(unknown) or repr(text)}: choose from {', '.join(WRITERS)}"
        )
    return names


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(
    transcript: Transcript, formats: Sequence[str], output_dir: Path, stem: str
) -> dict[str, Path]:
    written: dict[str, Path] = {}
    for name in formats:
        path = output_dir / f"{stem}.{name}"
        write_atomic(path, WRITERS[name](transcript))
        written[name] = path
    return written
