from __future__ import annotations

import json
from pathlib import Path

import pytest

from whisper_subs.errors import UsageError
from whisper_subs.formats import parse_formats, to_json, to_srt, to_tsv, to_vtt, write_outputs
from whisper_subs.types import ChunkError, Cue, Segment, Transcript, Word

TRANSCRIPT = Transcript(
    language="en",
    duration=3725.5,
    segments=(
        Segment(
            1.0,
            2.5,
            " Hello there.",
            (Word(1.0, 1.5, " Hello", 0.9), Word(1.6, 2.5, " there.", 0.8)),
        ),
        Segment(3661.001, 3662.0, " Later.", (Word(3661.001, 3662.0, " Later.", 0.7),)),
    ),
    cues=(Cue(1.0, 2.5, "Hello there."), Cue(3661.001, 3662.0, "Later.")),
    errors=(ChunkError(3, 90.0, 120.0, "boom", 2),),
)


def test_srt_and_vtt_timestamps() -> None:
    srt = to_srt(TRANSCRIPT)
    assert srt.startswith("1\n00:00:01,000 --> 00:00:02,500\nHello there.\n\n2\n")
    assert "01:01:01,001 --> 01:01:02,000" in srt
    vtt = to_vtt(TRANSCRIPT)
    assert vtt.startswith("WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nHello there.\n")


def test_json_shape() -> None:
    data = json.loads(to_json(TRANSCRIPT))
    assert set(data) >= {"language", "duration", "segments", "errors", "cues", "removed"}
    assert set(data["segments"][0]) == {"start", "end", "text", "words"}
    assert set(data["segments"][0]["words"][0]) == {"start", "end", "word", "probability"}
    assert data["errors"][0]["message"] == "boom"


def test_tsv_in_milliseconds() -> None:
    assert to_tsv(TRANSCRIPT).splitlines()[1] == "1000\t2500\tHello there."


def test_formats_are_parsed_and_checked() -> None:
    assert parse_formats("srt, VTT,json,srt") == ("srt", "vtt", "json")
    with pytest.raises(UsageError, match="unknown format doc"):
        parse_formats("srt,doc")


def test_outputs_are_written_atomically(tmp_path: Path) -> None:
    written = write_outputs(TRANSCRIPT, ("srt", "txt"), tmp_path / "out", "talk")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["talk.srt", "talk.txt"]
    assert written["txt"].read_text() == "Hello there.\nLater.\n"
