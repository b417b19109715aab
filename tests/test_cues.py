"""Cue building: unit tests on small streams, property tests on random English and Chinese."""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whisper_subs.check import check_cues
from whisper_subs.cues import (
    CueOptions,
    build_cues,
    cue_options_for,
    cues_from_segments,
    text_width,
    wrap_lines,
)
from whisper_subs.errors import UsageError
from whisper_subs.types import Cue, Segment, Word

EN = cue_options_for("en")
ZH = cue_options_for("zh")
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def timed(pieces: list[str], rate_cps: float = 14.0, start: float = 0.0) -> list[Word]:
    """Back-to-back words at a steady rate; a ``|`` piece inserts a 2 s pause."""
    words, t = [], start
    for piece in pieces:
        if piece == "|":
            t += 2.0
            continue
        duration = max(len(piece), 1) / rate_cps
        words.append(Word(t, t + duration, piece))
        t += duration
    return words


def english(text: str, **kwargs: float) -> list[Word]:
    return timed([" " + w if w != "|" else w for w in text.split()], **kwargs)


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# --- options ----------------------------------------------------------------------------------


def test_options_per_language() -> None:
    assert EN.max_line_chars == 42 and EN.max_lines == 2 and EN.max_cps == 20
    assert EN.min_cue_s == pytest.approx(5 / 6) and EN.max_cue_s == 7
    assert EN.min_gap_s == pytest.approx(2 / 24) and EN.max_pause_s == 1.5
    assert ZH.max_line_chars == 16 and ZH.max_cps == 9 and ZH.narrow_char_width == 0.5
    assert cue_options_for("zh-TW") == ZH
    assert cue_options_for("ja").max_line_chars == 13
    assert cue_options_for("ko").max_line_chars == 16
    assert cue_options_for(None) == EN == cue_options_for("fr")


def test_options_overrides() -> None:
    options = cue_options_for("zh", max_cps=12, max_lines=None)
    assert options.max_cps == 12 and options.max_lines == 2
    with pytest.raises(UsageError, match="max_cpz"):
        cue_options_for("en", max_cpz=3)
    with pytest.raises(UsageError, match="max_lines"):
        CueOptions(max_lines=0)
    with pytest.raises(UsageError, match="min_cue_s"):
        CueOptions(min_cue_s=8, max_cue_s=7)


# --- width and lines ---------------------------------------------------------------------------


def test_width_counts_half_width_as_half_in_cjk() -> None:
    assert text_width("Hello, world") == 12
    assert text_width("你好", 0.5) == 2
    assert text_width("你好 iPhone", 0.5) == 2 + 3.5
    assert text_width("你好，“世界”…", 0.5) == 8
    assert text_width("e\u0301", 1.0) == 1  # combining accent


def test_wrap_keeps_one_line_when_it_fits() -> None:
    assert wrap_lines("Short and sweet.", EN) == ["Short and sweet."]


def test_wrap_balances_two_lines_and_prefers_punctuation() -> None:
    text = "I never said that, but everybody heard it anyway at the party"
    lines = wrap_lines(text, EN)
    assert lines == ["I never said that,", "but everybody heard it anyway at the party"] or (
        len(lines) == 2 and abs(len(lines[0]) - len(lines[1])) <= 12
    )
    assert all(len(line) <= 42 for line in lines)
    balanced = wrap_lines("one two three four five six seven eight nine ten eleven twelve", EN)
    assert len(balanced) == 2 and abs(len(balanced[0]) - len(balanced[1])) <= 8


def test_wrap_chinese_breaks_between_characters_without_spaces() -> None:
    text = "我们今天要讨论的话题是人工智能在日常生活中的应用"
    lines = wrap_lines(text, ZH)
    assert len(lines) == 2 and "".join(lines) == text
    assert all(text_width(line, 0.5) <= 16 for line in lines)


def test_wrap_words_keeps_an_overlong_word_whole() -> None:
    lines = wrap_lines([" a", " " + "x" * 50, " b"], EN)
    assert lines == ["a", "x" * 50, "b"]


# --- build_cues: units --------------------------------------------------------------------------


def test_empty_input() -> None:
    assert build_cues([], EN) == []
    assert build_cues([Word(0, 1, " "), Word(1, 2, "")], EN) == []


def test_short_sentence_is_one_cue_extended_to_min_duration() -> None:
    cues = build_cues(english("Hi there."), EN)
    assert len(cues) == 1
    assert cues[0].text == "Hi there."
    assert cues[0].start == 0
    assert cues[0].end == pytest.approx(EN.min_cue_s)


def test_cuts_at_sentence_end_before_anywhere_else() -> None:
    text = (
        "We walked along the river for most of the afternoon. "
        "Then the rain started and everybody ran back to the car laughing."
    )
    cues = build_cues(english(text), EN)
    assert [c.text.replace("\n", " ") for c in cues] == [
        "We walked along the river for most of the afternoon.",
        "Then the rain started and everybody ran back to the car laughing.",
    ]


def test_long_pause_always_ends_a_cue() -> None:
    cues = build_cues(english("Yes. | No."), EN)
    assert [c.text for c in cues] == ["Yes.", "No."]
    assert cues[0].end <= cues[1].start - EN.min_gap_s


def test_pause_not_longer_than_max_is_bridged() -> None:
    words = [Word(0.0, 0.4, " Well"), Word(1.6, 2.0, " maybe.")]  # 1.2 s pause
    assert [c.text for c in build_cues(words, EN)] == ["Well maybe."]


def test_gap_is_taken_from_the_earlier_cue_when_words_touch() -> None:
    text = " ".join(["word"] * 60) + "."
    cues = build_cues(english(text), EN)
    assert len(cues) > 1
    for a, b in itertools.pairwise(cues):
        assert b.start - a.end == pytest.approx(EN.min_gap_s)
    starts = {w.start for w in english(text)}
    assert all(c.start in starts for c in cues)


def test_single_overlong_word_gets_its_own_line() -> None:
    long_word = " " + "supercalifragilistic" * 3
    words = english("It was") + timed([long_word], start=0.6) + english("indeed.", start=5.0)
    cues = build_cues(words, EN)
    assert long_word.strip() in [line for c in cues for line in c.text.split("\n")]
    violations = check_cues(cues, EN)
    assert {v.rule.value for v in violations} == {"line-too-long"}


def test_word_longer_than_max_duration_is_capped() -> None:
    cues = build_cues([Word(0.0, 12.0, " Sooo"), Word(12.0, 12.5, " long.")], EN)
    assert cues[0].end - cues[0].start <= EN.max_cue_s
    assert not check_cues(cues, EN)


def test_chinese_words_join_without_spaces() -> None:
    pieces = ["我们", "今天", "去", "公园", "散步", "。", "你", "也", "来", "吗", "？"]
    cues = build_cues(timed(pieces, rate_cps=4), ZH)
    assert "".join(c.text for c in cues) == "我们今天去公园散步。你也来吗？"


def test_mixed_chinese_and_latin_keeps_whisper_spaces() -> None:
    pieces = ["我", "用", " iPhone", "拍", "照", "。"]
    cues = build_cues(timed(pieces, rate_cps=4), ZH)
    assert [c.text for c in cues] == ["我用 iPhone拍照。"]


def test_degenerate_timestamps_never_overlap() -> None:
    words = [Word(5.0, 5.0, " x" * 1) for _ in range(200)]
    cues = build_cues(words, EN)
    assert squash("".join(c.text for c in cues)) == "x" * 200
    for a, b in itertools.pairwise(cues):
        assert a.start <= a.end <= b.start


def test_non_monotonic_word_times_are_tolerated() -> None:
    words = [Word(1.0, 1.5, " b"), Word(0.5, 0.7, " a"), Word(math.nan, 2.0, " c.")]
    cues = build_cues(words, EN)
    assert squash("".join(c.text for c in cues)) == "bac."
    assert all(c.start <= c.end for c in cues)


# --- cues_from_segments -------------------------------------------------------------------------


def test_segments_one_cue_each_with_fixed_overlap_and_gap() -> None:
    segments = [
        Segment(0.0, 2.5, " Hello there, this is the first segment of the transcript."),
        Segment(2.4, 3.0, " Short."),
        Segment(3.0, 3.1, "   "),
        Segment(9.0, 10.0, " Last."),
    ]
    cues = cues_from_segments(segments, EN)
    assert len(cues) == 3
    assert cues[0].text == "Hello there, this is the first\nsegment of the transcript."
    assert cues[0].end == pytest.approx(2.4 - EN.min_gap_s)
    assert cues[1].end == pytest.approx(2.4 + EN.min_cue_s)
    assert not [v for v in check_cues(cues, EN) if v.rule.value in ("overlap", "gap-too-small")]


def test_segments_too_long_for_two_lines_get_more_lines() -> None:
    text = " " + " ".join(["alpha beta gamma delta"] * 6)
    cues = cues_from_segments([Segment(0.0, 6.0, text)], EN)
    lines = cues[0].text.split("\n")
    assert len(lines) == 4 and all(len(line) <= 42 for line in lines)
    assert squash(cues[0].text) == squash(text)


# --- properties ---------------------------------------------------------------------------------

_LATIN_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFG'", min_size=1, max_size=11)
_HAN = "的一是不了人我在有他这中大来上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事"
_CJK_WORD = st.text(alphabet=_HAN, min_size=1, max_size=3)


_PAUSE = st.sampled_from([0.0, 0.0, 0.0, 0.05, 0.2, 0.4, 0.8, 1.2, 1.6, 3.0])
_EN_ITEM = st.tuples(_LATIN_WORD, st.sampled_from(["", "", "", "", ",", ".", "?"]), _PAUSE)
_ZH_ITEM = st.tuples(
    _CJK_WORD | _LATIN_WORD.map(" {}".format),
    st.sampled_from(["", "", "", "", "，", "。", "？"]),
    _PAUSE,
)


@st.composite
def realistic_stream(draw, language: str) -> list[Word]:
    """Words at a normal speaking rate, with natural pauses and punctuation."""
    if language == "en":
        rate = draw(st.floats(min_value=8.0, max_value=15.0))
        items = draw(st.lists(_EN_ITEM, min_size=1, max_size=150))
        texts = [(" " + core + punct, pause) for core, punct, pause in items]
    else:
        rate = draw(st.floats(min_value=3.0, max_value=6.0))
        items = draw(st.lists(_ZH_ITEM, min_size=1, max_size=150))
        texts = [(core + punct, pause) for core, punct, pause in items]
    words, t = [], draw(st.floats(min_value=0, max_value=100))
    for text, pause in texts:
        duration = len(text) / rate
        words.append(Word(t, t + duration, text))
        t += duration + pause
    return words


_WILD_ITEM = st.tuples(
    st.floats(min_value=0, max_value=60),
    st.floats(min_value=-0.5, max_value=9),
    st.sampled_from([" ", "", "  "]),
    _LATIN_WORD | _CJK_WORD | st.text(max_size=60),
)


@st.composite
def wild_stream(draw) -> list[Word]:
    """Anything Whisper might hand over: overlaps, zero lengths, long words, odd spacing."""
    items = draw(st.lists(_WILD_ITEM, max_size=80))
    return [Word(start, start + length, lead + text) for start, length, lead, text in items]


def assert_structural(cues: list[Cue], words: list[Word], options: CueOptions) -> None:
    # Every word once, in order: only whitespace may change.
    assert squash("".join(c.text for c in cues)) == squash("".join(w.word for w in words))
    single_words = {squash(w.word) for w in words}
    for cue in cues:
        assert cue.start <= cue.end
        assert cue.end - cue.start <= options.max_cue_s + 1e-9
        assert cue.text == cue.text.strip() and cue.text
        lines = cue.text.split("\n")
        assert 1 <= len(lines) <= options.max_lines
        for line in lines:
            assert line.strip()
            # Only a line holding a single word may be too wide.
            if text_width(line, options.narrow_char_width) > options.max_line_chars:
                assert squash(line) in single_words
    for a, b in itertools.pairwise(cues):
        assert a.end <= b.start, "cues overlap"


@PROPERTY
@given(realistic_stream("en"))
def test_property_english_realistic(words: list[Word]) -> None:
    cues = build_cues(words, EN)
    assert_structural(cues, words, EN)
    assert check_cues(cues, EN) == []


@PROPERTY
@given(realistic_stream("zh"))
def test_property_chinese_realistic(words: list[Word]) -> None:
    cues = build_cues(words, ZH)
    assert_structural(cues, words, ZH)
    assert check_cues(cues, ZH) == []
    for cue in cues:  # no space is ever put between Han characters
        assert not re.search(f"[{_HAN}] +[{_HAN}]", cue.text)


@PROPERTY
@given(wild_stream(), st.sampled_from([EN, ZH]))
def test_property_any_stream_keeps_words_order_and_no_overlap(
    words: list[Word], options: CueOptions
) -> None:
    cues = build_cues(words, options)
    assert_structural(cues, words, options)
    for a, b in itertools.pairwise(cues):
        assert a.start <= a.end <= b.start


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("language", ["en", "zh"])
def test_long_realistic_stream_passes_check(language: str, seed: int) -> None:
    rng = random.Random(seed)
    options = cue_options_for(language)
    rate = rng.uniform(8, 15) if language == "en" else rng.uniform(3, 6)
    words, t = [], 0.0
    for _ in range(2000):
        if language == "en":
            core = "".join(rng.choice("etaoinshrdlu") for _ in range(rng.randint(1, 11)))
            text = " " + core + rng.choice(["", "", "", ",", ".", "?"])
        else:
            core = "".join(rng.choice(_HAN) for _ in range(rng.randint(1, 3)))
            text = core + rng.choice(["", "", "", "，", "。"])
        duration = len(text) / rate
        words.append(Word(t, t + duration, text))
        t += duration + rng.choice([0.0, 0.0, 0.0, 0.05, 0.2, 0.4, 0.8, 1.2, 1.6, 3.0])
    cues = build_cues(words, options)
    assert_structural(cues, words, options)
    assert check_cues(cues, options) == []
