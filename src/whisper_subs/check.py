"""Check subtitles against the readability rules of ``CueOptions``; read any SRT file.

Tolerance: SRT and WebVTT keep times to the millisecond, and a cue built exactly at a limit
(5/6 s long, a 2-frame gap, a reading speed of exactly ``max_cps``) may round either way when it
is written. So every time rule allows ``TIME_TOLERANCE_S`` (1 ms): a cue is too short only if it
lasts less than ``min_cue_s - 1 ms``, the gap is too small only if below ``min_gap_s - 1 ms``,
too fast only if its characters exceed ``max_cps * (duration + 1 ms)``. Widths are exact (they
are multiples of 0.5). Overlaps get no tolerance beyond float noise. With this, cues from
``build_cues`` pass with the same options unless a rule cannot be met (a word wider than a line,
speech too fast or timestamps too tight for any cutting), and what is reported is a real
breach, not rounding.

Cue numbers in violations are 1-based positions in the list (for a file: the order of the
cues in it, whatever numbers the file gives them).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .cues import CueOptions, cue_options_for, text_width
from .errors import UsageError
from .types import Cue

log = logging.getLogger(__name__)

TIME_TOLERANCE_S = 0.001  # SRT/WebVTT millisecond rounding; see the module docstring
_FLOAT_SLACK = 1e-6  # float noise in times read back from text


class SrtParseError(UsageError):
    """An SRT file that cannot be read as subtitles; ``line`` is 1-based (0: the whole file)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


class Rule(str, Enum):
    """What a violation breaks; the value is the short name shown to users."""

    LINE_TOO_LONG = "line-too-long"
    TOO_MANY_LINES = "too-many-lines"
    TOO_FAST = "too-fast"
    TOO_SHORT = "too-short"
    TOO_LONG = "too-long"
    OVERLAP = "overlap"
    GAP_TOO_SMALL = "gap-too-small"
    EMPTY = "empty"


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule in one cue."""

    cue_number: int  # 1-based position of the cue
    rule: Rule
    message: str  # starts with the cue's start time, says the value seen and the limit


def format_violation(violation: Violation) -> str:
    """One line for a user: ``cue 12: too-fast: 00:01:02,345 ...``."""
    return f"cue {violation.cue_number}: {violation.rule.value}: {violation.message}"


# ---------------------------------------------------------------------------------------------
# SRT reading

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s.*)?$")
_INDEX = re.compile(r"^\s*\d+\s*$")
# Formatting that is not shown: HTML-like tags (<i>, </font>) and ASS overrides ({\an8}).
_TAGS = re.compile(r"</?[A-Za-z][^<>]*>|\{\\[^{}]*\}")


def format_timestamp(seconds: float) -> str:
    """``HH:MM:SS,mmm`` as SRT writes it."""
    ms = max(round(seconds * 1000), 0)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{ms:03d}"


def _seconds(hours: str | None, minutes: str, secs: str, frac: str) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(secs) + int(frac.ljust(3, "0")) / 1000


def _timing(line: str) -> tuple[float, float] | None:
    match = _TIMING.match(line)
    if not match:
        return None
    g = match.groups()
    return _seconds(*g[:4]), _seconds(*g[4:])


def parse_srt(text: str) -> list[Cue]:
    """Cues of SRT text. Tolerates a BOM, CRLF or CR line ends, blank lines in excess or
    missing at the end or between cues, missing cue numbers, ``.`` for ``,`` in times and
    position data after the times. Raises SrtParseError with the line number otherwise."""
    lines = text.lstrip("\ufeff").splitlines()
    cues: list[Cue] = []
    k, n = 0, len(lines)
    while k < n:
        if not lines[k].strip():
            k += 1
            continue
        times = _timing(lines[k])
        if times is None:
            if not _INDEX.match(lines[k]):
                raise SrtParseError(
                    f"line {k + 1}: expected a cue number or a timing line "
                    f"('00:00:01,000 --> 00:00:02,500'), found {lines[k].strip()[:60]!r}.",
                    k + 1,
                )
            k += 1
            times = _timing(lines[k]) if k < n else None
            if times is None:
                found = repr(lines[k].strip()[:60]) if k < n else "the end of the file"
                raise SrtParseError(
                    f"line {k + 1}: expected a timing line ('00:00:01,000 --> 00:00:02,500') "
                    f"after the cue number, found {found}.",
                    k + 1,
                )
        k += 1
        text_lines = []
        while k < n and lines[k].strip():
            # A cue that follows without the blank line: a number, then a timing line.
            if _timing(lines[k]) is not None or (
                _INDEX.match(lines[k]) and k + 1 < n and _timing(lines[k + 1]) is not None
            ):
                break
            text_lines.append(lines[k].strip())
            k += 1
        cues.append(Cue(start=times[0], end=times[1], text="\n".join(text_lines)))
    return cues


def read_srt(path: str | Path) -> list[Cue]:
    """Cues of an SRT file (UTF-8, with or without BOM, or UTF-16 with BOM)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"Cannot read subtitle file {str(path)!r}: {exc.strerror or exc}."
        ) from exc
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SrtParseError(
            f"{path}: line {line}: not {encoding.upper()} text ({exc.reason}); "
            "save the file as UTF-8 and try again.",
            line,
        ) from exc
    try:
        return parse_srt(text)
    except SrtParseError as exc:
        raise SrtParseError(f"{path}: {exc}", exc.line) from exc


# ---------------------------------------------------------------------------------------------
# Rules


def visible_lines(text: str) -> list[str]:
    """The lines a viewer sees: formatting tags removed, blank lines dropped."""
    lines = (line.strip() for line in _TAGS.sub("", text).split("\n"))
    return [line for line in lines if line]


def check_cues(cues: Sequence[Cue], options: CueOptions) -> list[Violation]:
    """Every rule each cue breaks, in cue order (see the module docstring for the tolerance)."""
    out: list[Violation] = []
    narrow = options.narrow_char_width
    prev: Cue | None = None
    for number, cue in enumerate(cues, start=1):
        at = format_timestamp(cue.start)

        def add(rule: Rule, message: str, number: int = number, at: str = at) -> None:
            out.append(Violation(number, rule, f"{at}: {message}"))

        lines = visible_lines(cue.text)
        duration = cue.end - cue.start
        if not lines:
            add(Rule.EMPTY, "the cue has no text.")
        if len(lines) > options.max_lines:
            add(Rule.TOO_MANY_LINES, f"{len(lines)} lines; the limit is {options.max_lines}.")
        for k, line in enumerate(lines, start=1):
            width = text_width(line, narrow)
            if width > options.max_line_chars + _FLOAT_SLACK:
                add(
                    Rule.LINE_TOO_LONG,
                    f"line {k} is {width:g} characters wide; the limit is "
                    f"{options.max_line_chars:g}: {line!r}.",
                )
        if duration < options.min_cue_s - TIME_TOLERANCE_S - _FLOAT_SLACK:
            add(
                Rule.TOO_SHORT,
                f"on screen {duration:.3f} s; the minimum is {options.min_cue_s:.3f} s.",
            )
        if duration > options.max_cue_s + TIME_TOLERANCE_S + _FLOAT_SLACK:
            add(
                Rule.TOO_LONG,
                f"on screen {duration:.3f} s; the maximum is {options.max_cue_s:g} s.",
            )
        chars = sum(text_width(line, narrow) for line in lines)
        if (
            lines
            and duration > 0
            and chars > options.max_cps * (duration + TIME_TOLERANCE_S) + _FLOAT_SLACK
        ):
            add(
                Rule.TOO_FAST,
                f"{chars / duration:.1f} characters per second ({chars:g} in {duration:.3f} s); "
                f"the limit is {options.max_cps:g}.",
            )
        if prev is not None:
            gap = cue.start - prev.end
            if gap < -_FLOAT_SLACK:
                add(
                    Rule.OVERLAP,
                    f"starts {-gap:.3f} s before cue {number - 1} ends "
                    f"({format_timestamp(prev.end)}).",
                )
            elif gap < options.min_gap_s - TIME_TOLERANCE_S - _FLOAT_SLACK:
                add(
                    Rule.GAP_TOO_SMALL,
                    f"starts {gap * 1000:.0f} ms after cue {number - 1} ends; the minimum gap "
                    f"is {options.min_gap_s * 1000:.0f} ms.",
                )
        prev = cue
    return out


def check_srt(
    path: str | Path, language: str | None = None, options: CueOptions | None = None
) -> list[Violation]:
    """Violations in an SRT file, with ``options`` or the defaults for ``language``."""
    cues = read_srt(path)
    options = options if options is not None else cue_options_for(language)
    violations = check_cues(cues, options)
    log.debug("%s: %d cues, %d violations", path, len(cues), len(violations))
    return violations
