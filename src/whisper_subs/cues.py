"""Readable subtitle cues from timed words: line length, reading speed, duration, gaps.

Rules follow the Netflix Timed Text Style Guides (General Requirements plus the per-language
guides): at most two lines, 42 characters a line for Latin scripts and 16 full-width characters
for Chinese, a cue lasts 5/6 s to 7 s, two frames (at 24 fps) between cues, and a reading speed
limit in characters per second.

How ``build_cues`` works:

* Word order is kept and no word is split; every word lands in exactly one cue.
* Where to cut is chosen by dynamic programming over the word stream. Hard limits: a cue never
  spans a pause longer than ``max_pause_s``, its words fit in ``max_lines`` lines of
  ``max_line_chars`` and its speech lasts at most ``max_cue_s``. A cue of one word is always
  allowed, so a word wider than a line gets a line of its own and a word longer than
  ``max_cue_s`` a cue of its own (cut to ``max_cue_s``).
* Among the cuttings that respect those limits, the one with the fewest cues that would break
  the soft rules (too short, too fast) wins; then the cheapest: cutting after sentence
  punctuation costs nothing, after clause punctuation a little, elsewhere more, less the longer
  the pause there; a little for each cue and for uneven fill.
* Timing: a cue starts at its first word's start. It ends at its last word's end, extended
  toward ``min_cue_s`` and toward the time its text needs at ``max_cps`` (never beyond
  ``max_cue_s``), but always at least ``min_gap_s`` before the next cue starts. Where the next
  cue starts less than ``min_gap_s`` after the last word ends (common: Whisper's words touch),
  the gap is taken from the earlier cue, so it ends slightly before its last word does; the
  next cue's start is never moved. Only if the next cue starts within ``min_gap_s`` of this
  cue's own start (degenerate timestamps) is the gap given up, never the order: cues never
  overlap.

Width: every character counts 1, except with ``narrow_char_width`` below 1 (Chinese, Japanese,
Korean): there full-width characters count 1 and half-width ones (Latin letters, digits,
spaces, ASCII punctuation) count ``narrow_char_width``, Netflix's 0.5. Combining marks and
format characters count 0. Reading speed counts the characters of the lines without the line
breaks.

Joining words: Whisper gives words of space-separated languages a leading space and words of
Chinese and Japanese none, so words are concatenated as given (whitespace inside a word
collapsed to one space, whitespace at line starts and ends dropped); no space is ever added.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .errors import UsageError
from .types import Cue, Segment, Word

log = logging.getLogger(__name__)

NETFLIX_FRAME_S = 1 / 24  # frame gaps are counted at 24 fps
_EPS = 1e-9  # float slack for comparisons of widths and times computed here


# The CueOptions fields a user sets (CLI flags, API form fields).
CUE_FLAGS = ("max_line_chars", "max_lines", "max_cps", "min_cue_s", "max_cue_s", "min_gap_s")


@dataclass(frozen=True, slots=True)
class CueOptions:
    """Limits for readable cues; widths in characters (see the module docstring)."""

    # Widest line, in characters (full-width characters where narrow_char_width < 1).
    max_line_chars: float = 42
    # Most lines in one cue.
    max_lines: int = 2
    # Reading speed limit: characters (line breaks not counted) per second on screen.
    max_cps: float = 20.0
    # Shortest time a cue stays on screen (Netflix: 5/6 s, 20 frames at 24 fps).
    min_cue_s: float = 5 / 6
    # Longest time a cue stays on screen.
    max_cue_s: float = 7.0
    # Least time between one cue's end and the next one's start (Netflix: 2 frames).
    min_gap_s: float = 2 * NETFLIX_FRAME_S
    # A pause in speech longer than this always ends the cue.
    max_pause_s: float = 1.5
    # A cue too fast to read may appear up to this long before its first word, in a pause.
    max_lead_in_s: float = 0.5
    # Width of a half-width character: 1 for Latin scripts, 0.5 for Chinese, Japanese, Korean.
    narrow_char_width: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if not self.max_line_chars > 0:
            problems.append(f"max_line_chars must be > 0, got {self.max_line_chars!r}")
        if not (isinstance(self.max_lines, int) and self.max_lines >= 1):
            problems.append(f"max_lines must be an integer >= 1, got {self.max_lines!r}")
        if not self.max_cps > 0:
            problems.append(f"max_cps must be > 0, got {self.max_cps!r}")
        if not 0 <= self.min_cue_s <= self.max_cue_s:
            problems.append(
                f"need 0 <= min_cue_s <= max_cue_s, got {self.min_cue_s!r} and {self.max_cue_s!r}"
            )
        if not self.max_cue_s > 0:
            problems.append(f"max_cue_s must be > 0, got {self.max_cue_s!r}")
        if not self.min_gap_s >= 0:
            problems.append(f"min_gap_s must be >= 0, got {self.min_gap_s!r}")
        if not self.max_pause_s >= 0:
            problems.append(f"max_pause_s must be >= 0, got {self.max_pause_s!r}")
        if not 0 < self.narrow_char_width <= 1:
            problems.append(f"narrow_char_width must be in (0, 1], got {self.narrow_char_width!r}")
        if problems:
            raise UsageError("Invalid cue options: " + "; ".join(problems) + ".")


# Netflix Timed Text Style Guides. Latin scripts: the English guide (42 characters, 20 cps for
# adult programmes); other Latin-script guides say 17 cps, but these subtitles are verbatim
# transcripts of the same language, closer to SDH, so 20 is kept for all of them.
_LATIN = CueOptions()
# Simplified Chinese (PRC) guide: 16 full-width characters a line, 9 cps.
_CHINESE = CueOptions(max_line_chars=16, max_cps=9.0, narrow_char_width=0.5)
# Japanese guide: 13 full-width characters a horizontal line. Its 4 cps is written for
# translated subtitles and would flag nearly every verbatim cue; 7 cps is the usual rate for
# same-language (SDH) Japanese subtitles.
_JAPANESE = CueOptions(max_line_chars=13, max_cps=7.0, narrow_char_width=0.5)
# Korean guide: 16 characters a line, Latin characters, spaces and punctuation count 0.5;
# 12 cps for adult programmes.
_KOREAN = CueOptions(max_line_chars=16, max_cps=12.0, narrow_char_width=0.5)

_BY_LANGUAGE = {"zh": _CHINESE, "yue": _CHINESE, "ja": _JAPANESE, "ko": _KOREAN}


def cue_options_for(language: str | None, **overrides: object) -> CueOptions:
    """Default cue options for a language tag (``"en"``, ``"zh-TW"``, ``"ja"``; None: Latin).

    Keyword overrides replace single fields; an override of None is ignored, so a CLI can pass
    its unset options straight through. An unknown field raises UsageError.
    """
    primary = re.split(r"[-_]", language.strip().lower())[0] if language else ""
    base = _BY_LANGUAGE.get(primary, _LATIN)
    fields = {f.name for f in dataclasses.fields(CueOptions)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UsageError(
            f"Unknown cue option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}."
        )
    changes = {name: value for name, value in overrides.items() if value is not None}
    return dataclasses.replace(base, **changes) if changes else base


# ---------------------------------------------------------------------------------------------
# Width


def _char_width(ch: str, narrow: float) -> float:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0.0
    if narrow >= 1.0:
        return 1.0
    eaw = unicodedata.east_asian_width(ch)
    if eaw in ("W", "F"):
        return 1.0
    # Ambiguous-width punctuation (“ ” … — ·) is set full-width in CJK text.
    if eaw == "A" and unicodedata.category(ch).startswith("P"):
        return 1.0
    return narrow


def text_width(text: str, narrow_char_width: float = 1.0) -> float:
    """Width of ``text`` in characters; line breaks count 0 (see the module docstring)."""
    return sum(_char_width(ch, narrow_char_width) for ch in text if ch not in "\r\n")


# ---------------------------------------------------------------------------------------------
# Tokens: words as (separator, core) with their widths and times

_SENTENCE_END = ".!?。！？…‼⁇⁈⁉؟։።।॥︒﹒﹖﹗"
_CLAUSE_END = ",;:、，；：—–‚﹐﹑﹔﹕"
_CLOSERS = "\"'”’»」』）)]】》〉〕›"
_OPENERS = "「『（(【《〈〔“‘«‹["
# English abbreviations whose full stop ends no sentence.
_ABBREVIATIONS = frozenset(
    {
        "mr.",
        "mrs.",
        "ms.",
        "dr.",
        "prof.",
        "st.",
        "jr.",
        "sr.",
        "vs.",
        "etc.",
        "e.g.",
        "i.e.",
        "no.",
        "mt.",
        "approx.",
        "inc.",
        "ltd.",
    }
)
# English words a line or cue should not end on (Netflix: keep articles with their noun,
# prepositions and conjunctions with what follows, a subject pronoun with its verb).
_CLINGING = frozenset(
    {
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "nor",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "into",
        "onto",
        "as",
        "than",
        "that",
        "if",
        "i",
        "my",
        "your",
        "his",
        "her",
        "its",
        "our",
        "their",
        "this",
        "these",
        "those",
        "is",
        "are",
        "was",
        "were",
    }
)

_SENTENCE, _CLAUSE, _NONE = 2, 1, 0


@dataclass(frozen=True, slots=True)
class _Token:
    sep: str  # whitespace before the word when it does not start a line ("" or " ")
    core: str  # the word without surrounding whitespace
    sep_w: float
    core_w: float
    start: float
    end: float
    punct: int  # _SENTENCE, _CLAUSE or _NONE: the punctuation the word ends with
    clinging: bool  # a word a line should not end on


def _punct_class(core: str) -> int:
    stripped = core.rstrip(_CLOSERS)
    if not stripped:
        return _NONE
    if stripped[-1] in _SENTENCE_END:
        return _NONE if core.lower() in _ABBREVIATIONS else _SENTENCE
    if stripped[-1] in _CLAUSE_END:
        return _CLAUSE
    return _NONE


def _make_token(sep: str, core: str, start: float, end: float, narrow: float) -> _Token:
    return _Token(
        sep=sep,
        core=core,
        sep_w=text_width(sep, narrow),
        core_w=text_width(core, narrow),
        start=start,
        end=end,
        punct=_punct_class(core),
        clinging=core.lower().strip(_OPENERS + _CLOSERS) in _CLINGING,
    )


def _finite(value: float, fallback: float) -> float:
    return value if math.isfinite(value) else fallback


def _tokens_from_words(words: Sequence[Word], narrow: float) -> list[_Token]:
    """Words as tokens with monotonic times; words that are only whitespace are dropped."""
    tokens: list[_Token] = []
    prev_start = 0.0
    pending_space = False
    for word in words:
        text = word.word
        core = " ".join(text.split())
        if not core:
            pending_space = pending_space or bool(text)
            continue
        sep = " " if (pending_space or text[:1].isspace()) else ""
        pending_space = text[-1:].isspace()
        # Whisper's timestamps are not always monotonic (or even finite); cues need them to be.
        start = max(_finite(word.start, prev_start), prev_start if tokens else -math.inf)
        end = max(_finite(word.end, start), start)
        prev_start = start
        tokens.append(_make_token(sep, core, start, end, narrow))
    return tokens


# Han, kana and CJK punctuation: scripts written without spaces, breakable between characters.
_CJK = (
    "\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u31c0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003ffff"
)
_CLOSE_PUNCT = "」』）》〉】〕，。、！？：；”’…‥,.!?:;)]}"
_TEXT_TOKEN = re.compile(
    rf"(\s*)([{re.escape(_OPENERS)}]*(?:[{_CJK}]|[^\s{_CJK}]+)[{re.escape(_CLOSE_PUNCT)}]*)"
)


def _tokens_from_text(text: str, narrow: float) -> list[_Token]:
    """Split plain text where a line may break: at spaces, and between Han/kana characters."""
    tokens = []
    for match in _TEXT_TOKEN.finditer(text):
        sep = " " if match.group(1) else ""
        tokens.append(_make_token(sep, match.group(2), 0.0, 0.0, narrow))
    return tokens


# ---------------------------------------------------------------------------------------------
# Lines


def _greedy_line_count(tokens: Sequence[_Token], max_line_chars: float) -> int:
    """Fewest lines the tokens fit in (first fit is optimal for a fixed order)."""
    lines, width = 0, 0.0
    for k, tok in enumerate(tokens):
        if k and width + tok.sep_w + tok.core_w <= max_line_chars + _EPS:
            width += tok.sep_w + tok.core_w
        else:
            lines += 1
            width = tok.core_w
    return lines


# Line-break preferences, in units of squared imbalance / max_line_chars**2.
_LINE_BREAK_COST = {_SENTENCE: 0.0, _CLAUSE: 0.04, _NONE: 0.1}
_LINE_CLINGING_COST = 0.08


def _layout(tokens: Sequence[_Token], options: CueOptions) -> list[str]:
    """Tokens as the fewest lines that fit, balanced in width, broken after punctuation."""
    if not tokens:
        return []
    cap = options.max_line_chars
    count = _greedy_line_count(tokens, cap)
    if count == 1:
        return [_join(tokens)]
    n = len(tokens)
    # prefix[k]: width of tokens[0:k] laid on one line, the first token's separator excluded.
    prefix = [0.0] * (n + 1)
    for k, tok in enumerate(tokens):
        prefix[k + 1] = prefix[k] + (tok.sep_w if k else 0.0) + tok.core_w

    def width(a: int, b: int) -> float:  # tokens[a:b] on one line
        return prefix[b] - prefix[a] - (tokens[a].sep_w if a else 0.0)

    mean = prefix[n] / count
    inf = math.inf
    # cost[l][p]: best cost of tokens[0:p] in l lines; back[l][p]: where the last line starts.
    cost = [[inf] * (n + 1) for _ in range(count + 1)]
    back = [[0] * (n + 1) for _ in range(count + 1)]
    cost[0][0] = 0.0
    for lines in range(1, count + 1):
        for p in range(lines, n + 1):
            for q in range(p - 1, lines - 2, -1):
                if cost[lines - 1][q] == inf:
                    continue
                w = width(q, p)
                if w > cap + _EPS and p - q > 1:
                    break  # wider still for smaller q
                c = cost[lines - 1][q] + ((w - mean) / cap) ** 2
                if p < n:
                    last = tokens[p - 1]
                    c += _LINE_BREAK_COST[last.punct] + (
                        _LINE_CLINGING_COST if last.clinging else 0.0
                    )
                if c < cost[lines][p]:
                    cost[lines][p] = c
                    back[lines][p] = q
    bounds = []
    p = n
    for lines in range(count, 0, -1):
        q = back[lines][p]
        bounds.append((q, p))
        p = q
    return [_join(tokens[a:b]) for a, b in reversed(bounds)]


def _join(tokens: Sequence[_Token]) -> str:
    return "".join((tok.sep if k else "") + tok.core for k, tok in enumerate(tokens))


def wrap_lines(
    text_or_words: str | Sequence[str] | Sequence[Word], options: CueOptions
) -> list[str]:
    """Lay text out in the fewest lines of at most ``max_line_chars``, balanced in width.

    Takes plain text (broken at spaces and between Han/kana characters) or a sequence of words
    as Whisper gives them (broken only between words). Lines break after punctuation where the
    balance allows. A word wider than a line gets a line of its own. The result may have more
    than ``max_lines`` lines when the text does not fit; ``build_cues`` never lets that happen.
    """
    narrow = options.narrow_char_width
    if isinstance(text_or_words, str):
        tokens = _tokens_from_text(text_or_words, narrow)
    else:
        texts = [w.word if isinstance(w, Word) else w for w in text_or_words]
        tokens = _tokens_from_words([Word(0.0, 0.0, t) for t in texts], narrow)
    return _layout(tokens, options)


# ---------------------------------------------------------------------------------------------
# Timing


def _cue_end(
    start: float,
    speech_end: float,
    width: float,
    next_start: float,
    options: CueOptions,
    *,
    cap_at_max: bool = True,
) -> float:
    """End time for a cue: see the module docstring; the single rule both builders use."""
    need = min(max(options.min_cue_s, width / options.max_cps), options.max_cue_s)
    if cap_at_max:
        speech_end = min(speech_end, start + options.max_cue_s)
    end = max(speech_end, start + need)
    limit = next_start - options.min_gap_s
    if limit > start:
        return min(end, limit)
    # Degenerate timestamps: no room for the gap. Keep the order, give up the gap.
    return start + max(0.0, min(end, next_start) - start) / 2


# ---------------------------------------------------------------------------------------------
# Cutting the word stream into cues

_CUE_COST = 0.5  # per cue: prefer fewer, fuller cues
_FILL_WEIGHT = 2.0  # times (1 - fill)**2: prefer even cues over a full one and a scrap
_CUT_COST = {_SENTENCE: 0.0, _CLAUSE: 1.0, _NONE: 3.0}
_PAUSE_BONUS = {_SENTENCE: 0.0, _CLAUSE: 0.5, _NONE: 1.5}  # times min(pause_s, 1)
_CLINGING_CUT_COST = 1.0


def _cue_cost(
    tokens: Sequence[_Token],
    i: int,
    j: int,
    width: float,
    speech_end: float,
    options: CueOptions,
) -> tuple[int, float]:
    """(soft-rule violations, cost) of a cue made of tokens[i..j]."""
    start = tokens[i].start
    nxt = tokens[j + 1].start if j + 1 < len(tokens) else math.inf
    end = _cue_end(start, speech_end, width, nxt, options)
    duration = end - start
    fill = min(width / (options.max_line_chars * options.max_lines), 1.0)
    cost = _CUE_COST + _FILL_WEIGHT * (1.0 - fill) ** 2
    broken = 0
    if duration <= _EPS:
        broken += 2
    else:
        if duration < options.min_cue_s - _EPS:
            broken += 1
            cost += options.min_cue_s - duration
        if width > options.max_cps * duration + _EPS:
            broken += 1
            cost += width / duration / options.max_cps - 1.0
    pause = nxt - speech_end
    if j + 1 < len(tokens) and pause <= options.max_pause_s:
        last = tokens[j]
        bonus = _PAUSE_BONUS[last.punct] * min(max(pause, 0.0), 1.0)
        cost += max(_CUT_COST[last.punct] - bonus, 0.0)
        if last.clinging:
            cost += _CLINGING_CUT_COST
    return broken, cost


def _cut(
    tokens: Sequence[_Token], options: CueOptions, forced: frozenset[int] = frozenset()
) -> list[tuple[int, int]]:
    """Best cutting of the tokens into cues, as inclusive (first, last) index pairs.

    A token index in ``forced`` always starts a cue.
    """
    n = len(tokens)
    cap = options.max_line_chars
    best: list[tuple[int, float]] = [(0, 0.0)] + [(1 << 30, math.inf)] * n
    back = [0] * (n + 1)
    for i in range(n):
        base_broken, base_cost = best[i]
        lines, line_w, width, speech_end = 0, 0.0, 0.0, -math.inf
        for j in range(i, n):
            tok = tokens[j]
            if j > i:
                if tok.start - speech_end > options.max_pause_s or j in forced:
                    break
                width += tok.sep_w + tok.core_w
                if line_w + tok.sep_w + tok.core_w <= cap + _EPS:
                    line_w += tok.sep_w + tok.core_w
                else:
                    lines += 1
                    line_w = tok.core_w
                if lines > options.max_lines:
                    break
                if max(speech_end, tok.end) - tokens[i].start > options.max_cue_s + _EPS:
                    break
            else:
                lines, line_w, width = 1, tok.core_w, tok.core_w
            speech_end = max(speech_end, tok.end)
            broken, cost = _cue_cost(tokens, i, j, width, speech_end, options)
            candidate = (base_broken + broken, base_cost + cost)
            if candidate < best[j + 1]:
                best[j + 1] = candidate
                back[j + 1] = i
    groups = []
    j = n
    while j > 0:
        i = back[j]
        groups.append((i, j - 1))
        j = i
    groups.reverse()
    return groups


def _token_indices(words: Sequence[Word]) -> list[int | None]:
    """For each word, the index of its token (None for a whitespace-only word)."""
    out: list[int | None] = []
    n = 0
    for word in words:
        if " ".join(word.word.split()):
            out.append(n)
            n += 1
        else:
            out.append(None)
    return out


def build_cues(
    words: Sequence[Word], options: CueOptions, breaks: Collection[int] = ()
) -> list[Cue]:
    """Cut timed words into readable cues (see the module docstring for the rules).

    ``breaks``: indices of words that must start a cue (e.g. where a segment starts after a
    pause VAD found); the cutting is free everywhere else.
    """
    tokens = _tokens_from_words(words, options.narrow_char_width)
    if not tokens:
        return []
    token_of_word = _token_indices(words)
    forced = frozenset(
        t for b in breaks if 0 <= b < len(words) and (t := token_of_word[b]) is not None
    )
    groups = _cut(tokens, options, forced)
    cues = []
    for k, (i, j) in enumerate(groups):
        part = tokens[i : j + 1]
        width = sum(t.core_w for t in part) + sum(t.sep_w for t in part[1:])
        speech_end = max(t.end for t in part)
        nxt = tokens[groups[k + 1][0]].start if k + 1 < len(groups) else math.inf
        start = part[0].start
        end = _cue_end(start, speech_end, width, nxt, options)
        cues.append(Cue(start=start, end=end, text="\n".join(_layout(part, options))))
    log.debug("built %d cues from %d words", len(cues), len(tokens))
    return _lead_in(cues, options)


def _lead_in(cues: list[Cue], options: CueOptions) -> list[Cue]:
    """Start a cue that is too fast to read a little early, where the pause before allows.

    Speech faster than ``max_cps`` with no pause after it cannot be fixed by cutting (a cut
    removes time, too) nor by ending later (the next cue follows at once); the pause before it
    is the only time left. Subtitlers call this lead-in; it is kept under ``max_lead_in_s``.
    """
    out: list[Cue] = []
    for cue in cues:
        width = text_width(cue.text.replace("\n", ""), options.narrow_char_width)
        need = width / options.max_cps - (cue.end - cue.start)
        if need > 0 and options.max_lead_in_s > 0:
            earliest = out[-1].end + options.min_gap_s if out else 0.0
            start = max(cue.start - min(need, options.max_lead_in_s), earliest)
            if start < cue.start:
                cue = dataclasses.replace(cue, start=start)
        out.append(cue)
    return out


def cues_from_segments(segments: Sequence[Segment], options: CueOptions) -> list[Cue]:
    """One cue per Whisper segment (``--cue-style segments``): lines wrapped, timing fixed.

    Only overlaps and gaps are fixed, with the same end-time rule as ``build_cues``; a segment
    is never split, so a cue may be longer than ``max_cue_s`` or have more than ``max_lines``
    lines (wrapped to the fewest lines of ``max_line_chars``), and ``check_cues`` says so.
    Segments without text are skipped.
    """
    narrow = options.narrow_char_width
    items = []
    prev_start = 0.0
    for seg in segments:
        tokens = _tokens_from_text(seg.text, narrow)
        if not tokens:
            continue
        start = max(_finite(seg.start, prev_start), prev_start if items else -math.inf)
        end = max(_finite(seg.end, start), start)
        prev_start = start
        items.append((start, end, tokens))
    cues = []
    for k, (start, speech_end, tokens) in enumerate(items):
        width = sum(t.core_w for t in tokens) + sum(t.sep_w for t in tokens[1:])
        nxt = items[k + 1][0] if k + 1 < len(items) else math.inf
        end = _cue_end(start, speech_end, width, nxt, options, cap_at_max=False)
        cues.append(Cue(start=start, end=end, text="\n".join(_layout(tokens, options))))
    return cues
