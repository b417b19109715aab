"""ChunkResult <-> JSON: the round trip is exact, and foreign payloads are refused clearly."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whisper_subs import serialize
from whisper_subs.types import Chunk, ChunkResult, Segment, Word

pytestmark = pytest.mark.timeout(60)

finite = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(max_size=40)  # any Unicode, quotes, newlines, CJK
words = st.builds(Word, start=finite, end=finite, word=text, probability=finite)
segments = st.builds(
    Segment,
    start=finite,
    end=finite,
    text=text,
    words=st.lists(words, max_size=6).map(tuple),
    avg_logprob=finite,
    no_speech_prob=finite,
    compression_ratio=finite,
)
results = st.builds(
    ChunkResult,
    segments=st.lists(segments, max_size=4).map(tuple),
    language=st.sampled_from(["en", "de", "zh", "yue", ""]),
    language_probability=finite,
)
chunks = st.builds(
    Chunk,
    index=st.integers(0, 10_000),
    start=st.integers(0, 1 << 40),
    end=st.integers(0, 1 << 40),
)


@given(results)
def test_dict_round_trip_is_exact(result: ChunkResult) -> None:
    assert serialize.from_dict(serialize.to_dict(result)) == result


@given(results)
def test_json_text_round_trip_is_exact(result: ChunkResult) -> None:
    text = serialize.dumps(result)
    assert serialize.loads(text) == result
    assert serialize.dumps(serialize.loads(text)) == text  # stable: same text again


@given(chunks, results)
def test_chunk_payload_round_trip_is_exact(chunk: Chunk, result: ChunkResult) -> None:
    assert serialize.loads_chunk(serialize.dumps_chunk(chunk, result)) == (chunk, result)


def test_floats_keep_every_bit_and_non_finite_values() -> None:
    tricky = (0.1 + 0.2, 1e-310, -0.0, 5e-324, 1.7976931348623157e308)
    result = ChunkResult(
        segments=(
            *(Segment(v, v, "x", avg_logprob=v) for v in tricky),
            Segment(0.0, 1.0, "y", avg_logprob=-math.inf, compression_ratio=math.inf),
        ),
        language="en",
        language_probability=math.nextafter(1.0, 0.0),
    )
    back = serialize.loads(serialize.dumps(result))
    assert back == result
    assert [s.start.hex() for s in back.segments[:-1]] == [v.hex() for v in tricky]
    nan = ChunkResult((Segment(0.0, 1.0, "z", no_speech_prob=math.nan),), "en")
    assert math.isnan(serialize.loads(serialize.dumps(nan)).segments[0].no_speech_prob)


def test_numpy_floats_are_written_as_plain_json_numbers() -> None:
    np = pytest.importorskip("numpy")
    result = ChunkResult(
        (Segment(np.float32(1.5), np.float64(2.25), "a", (Word(np.float32(1.5), 2.0, " a"),)),),
        "en",
    )
    data = json.loads(serialize.dumps(result))
    assert data["segments"][0]["start"] == 1.5
    assert serialize.loads(serialize.dumps(result)).segments[0].words[0].start == 1.5


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "expected an object"),
        ('{"version": 1, "language": "en", "language_probability": 1}', "missing field 'segments'"),
        ('{"version": 99, "segments": []}', "format version 99"),
        (
            '{"version": 1, "language": "en", "language_probability": true, "segments": []}',
            "language_probability",
        ),
        (
            '{"version": 1, "language": "en", "language_probability": 1, '
            '"segments": [{"start": 0, "end": "1"}]}',
            "segments[0]",
        ),
    ],
)
def test_foreign_payloads_raise_value_error_naming_the_field(payload: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        serialize.loads(payload)


def test_chunk_payload_without_its_chunk_is_refused() -> None:
    with pytest.raises(ValueError, match="missing field 'chunk'"):
        serialize.loads_chunk(serialize.dumps(ChunkResult((), "en")))
