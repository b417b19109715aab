"""SRT reading and the readability checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisper_subs.check import (
    Rule,
    SrtParseError,
    Violation,
    check_cues,
    check_srt,
    format_timestamp,
    format_violation,
    parse_srt,
    read_srt,
)
from whisper_subs.cues import cue_options_for
from whisper_subs.errors import UsageError
from whisper_subs.types import Cue

EN = cue_options_for("en")
ZH = cue_options_for("zh")

GOOD = """1
00:00:01,000 --> 00:00:03,000
Hello there.

2
00:00:04,000 --> 00:00:06,500
<i>Two lines</i>
of text.
"""


def rules(violations: list[Violation]) -> list[str]:
    return [v.rule.value for v in violations]


# --- parsing ------------------------------------------------------------------------------------


def test_parse_plain() -> None:
    assert parse_srt(GOOD) == [
        Cue(1.0, 3.0, "Hello there."),
        Cue(4.0, 6.5, "<i>Two lines</i>\nof text."),
    ]


def test_parse_bom_crlf_and_no_trailing_blank_line() -> None:
    text = "\ufeff" + GOOD.rstrip("\n").replace("\n", "\r\n")
    assert parse_srt(text) == parse_srt(GOOD)


def test_parse_tolerates_missing_blank_lines_numbers_and_dots() -> None:
    text = (
        "\n\n1\n00:00:01.000 --> 00:00:03.000 X1:10 X2:20\nHello\n"
        "2\n00:00:04,000 --> 00:00:05,000\nWorld\n"
        "00:00:06,000 --> 00:00:07,000\nNo number\n\n\n\n"
    )
    assert parse_srt(text) == [
        Cue(1.0, 3.0, "Hello"),
        Cue(4.0, 5.0, "World"),
        Cue(6.0, 7.0, "No number"),
    ]


def test_parse_long_hours_and_empty_cue() -> None:
    cues = parse_srt("1\n100:00:00,5 --> 100:00:01,250\n\n2\n100:00:02,000 --> 100:00:03,000\nx\n")
    assert cues[0] == Cue(360000.5, 360001.25, "")
    assert cues[1].text == "x"


def test_parse_empty_file() -> None:
    assert parse_srt("") == [] and parse_srt("\ufeff\r\n\r\n") == []


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("1\n00:00:01,000 -> 00:00:02,000\nHi\n", 2),
        ("hello\n", 1),
        ("1\n00:00:01,000 --> 00:00:02,000\nHi\n\nnot a number\n", 5),
        ("1\n00:00:01,000 --> 00:00:02,000\nHi\n\n2\n", 6),
    ],
)
def test_parse_malformed_says_line(text: str, line: int) -> None:
    with pytest.raises(SrtParseError, match=f"line {line}") as info:
        parse_srt(text)
    assert info.value.line == line
    assert isinstance(info.value, UsageError)


def test_read_srt_files(tmp_path: Path) -> None:
    path = tmp_path / "a.srt"
    path.write_bytes(("\ufeff" + GOOD).replace("\n", "\r\n").encode("utf-8"))
    assert read_srt(path) == parse_srt(GOOD)
    path.write_bytes(GOOD.encode("utf-16"))
    assert read_srt(path) == parse_srt(GOOD)
    path.write_bytes(b"1\n00:00:01,000 --> 00:00:02,000\nbad \xff byte\n")
    with pytest.raises(SrtParseError, match="line 3"):
        read_srt(path)
    with pytest.raises(UsageError, match="Cannot read"):
        read_srt(tmp_path / "missing.srt")


# --- rules --------------------------------------------------------------------------------------


def test_good_cues_pass() -> None:
    assert check_cues(parse_srt(GOOD), EN) == []


def test_each_rule() -> None:
    cues = [
        Cue(0.0, 2.0, "x" * 43),  # line too long
        Cue(2.5, 4.5, "a\nb\nc"),  # too many lines
        Cue(5.0, 6.0, "y" * 30),  # too fast: 30 cps
        Cue(6.5, 7.0, "ok"),  # too short
        Cue(7.5, 15.0, "long"),  # too long
        Cue(14.0, 15.5, "overlap"),  # overlap
        Cue(15.52, 17.0, "tight"),  # gap below 2 frames
        Cue(18.0, 19.0, "  "),  # empty
    ]
    found = [(v.cue_number, v.rule) for v in check_cues(cues, EN)]
    assert found == [
        (1, Rule.LINE_TOO_LONG),
        (1, Rule.TOO_FAST),
        (2, Rule.TOO_MANY_LINES),
        (3, Rule.TOO_FAST),
        (4, Rule.TOO_SHORT),
        (5, Rule.TOO_LONG),
        (6, Rule.OVERLAP),
        (7, Rule.GAP_TOO_SMALL),
        (8, Rule.EMPTY),
    ]


def test_tolerance_is_one_millisecond() -> None:
    # Exactly at the limits after millisecond rounding: no violation.
    cues = [Cue(0.0, 0.833, "a" * 16), Cue(0.916, 2.0, "b")]  # 5/6 s -> 0.833; gap 83 ms
    assert check_cues(cues, EN) == []
    assert rules(check_cues([Cue(0.0, 0.831, "a")], EN)) == ["too-short"]
    assert rules(check_cues([Cue(0.0, 1.0, "a"), Cue(1.081, 2.0, "b")], EN)) == ["gap-too-small"]
    assert check_cues([Cue(0.0, 1.0, "a" * 20)], EN) == []
    assert rules(check_cues([Cue(0.0, 0.99, "a" * 20)], EN)) == ["too-fast"]


def test_speed_counts_characters_without_line_breaks_or_tags() -> None:
    assert check_cues([Cue(0.0, 1.0, "<i>" + "a" * 10 + "</i>\n" + "b" * 10)], EN) == []
    assert rules(check_cues([Cue(0.0, 1.0, "a" * 10 + "\n" + "b" * 11)], EN)) == ["too-fast"]


def test_chinese_widths() -> None:
    assert check_cues([Cue(0.0, 2.0, "我" * 16)], ZH) == []
    assert check_cues([Cue(0.0, 2.0, "我" * 12 + "abcdefgh")], ZH) == []  # 12 + 8 * 0.5
    assert rules(check_cues([Cue(0.0, 2.0, "我" * 17)], ZH)) == ["line-too-long"]


def test_format_violation() -> None:
    (violation,) = check_cues([Cue(61.5, 62.0, "Hi")], EN)
    text = format_violation(violation)
    assert text.startswith("cue 1: too-short: 00:01:01,500: ")
    assert "0.500 s" in text and "0.833 s" in text


def test_format_timestamp() -> None:
    assert format_timestamp(3723.4567) == "01:02:03,457"
    assert format_timestamp(-1) == "00:00:00,000"


def test_check_srt(tmp_path: Path) -> None:
    path = tmp_path / "zh.srt"
    path.write_text("1\n00:00:00,000 --> 00:00:02,000\n" + "字" * 17 + "\n", encoding="utf-8")
    assert rules(check_srt(path, "zh")) == ["line-too-long"]
    assert check_srt(path, "en") == []  # 17 characters fit an English line
