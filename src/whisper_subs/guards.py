"""Hallucination guards: drop what Whisper made up, and say what was dropped and why.

Three kinds of made-up text are caught:

* No speech: Whisper's own rule (``no_speech_prob > 0.6`` and ``avg_logprob < -1``), applied
  only where VAD, when given, also found little speech under the segment.
* Silence phrases: text Whisper writes over silence and music because its training subtitles
  had it ("Thanks for watching!", "Subtitles by the Amara.org community", "ご視聴ありがとう
  ございました", ...). Removed only where VAD found speech under less than
  ``min_speech_fraction`` of the segment; without VAD spans, only where Whisper itself leans
  toward no speech (``no_speech_prob >= silence_phrase_no_speech_prob``).
* Loops: the decoder repeating a phrase. Inside a segment, a phrase repeated
  ``loop_min_repeats`` times in a row (``loop_min_repeats_hinted`` when the segment's
  compression ratio is above ``compression_ratio_threshold``, a hint that never removes
  anything by itself) is cut back to its first copy. Across segments, a run of
  ``segment_loop_min_repeats`` segments with the same text keeps only the first. Short
  repeats a person really says ("no, no, no, no", "哈哈哈哈") are below ``loop_min_chars``
  and stay.

Every change is reported as a ``Removed`` with a reason a user can read; nothing is dropped
silently. ``keep_all`` turns every guard off (the caller may equally not call
``apply_guards``).
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .types import Removed, Segment, Word

log = logging.getLogger(__name__)

# Text Whisper produces over silence, as found in its training subtitles; ``*`` matches up to
# 40 characters. Matched after normalisation (NFKC, case folded, only letters and digits kept), so
# punctuation, spacing and case do not matter. A segment matches when its whole text is made
# of these phrases.
SILENCE_PHRASES: tuple[str, ...] = (
    # English
    "you",
    "thank you",
    "thank you very much",
    "thank you so much",
    "thanks",
    "thank you for watching",
    "thanks for watching",
    "thank you so much for watching",
    "thank you very much for watching",
    "thank you for listening",
    "thanks for listening",
    "please subscribe",
    "please like and subscribe",
    "like and subscribe",
    "don't forget to like and subscribe",
    "subscribe to my channel",
    "see you next time",
    "see you in the next video",
    "bye",
    "bye bye",
    "subtitles by the amara.org community",
    "subtitles by *",
    "transcription by castingwords",
    "transcribed by *",
    "captions by *",
    # Chinese (Simplified and Traditional)
    "字幕由*提供",
    "字幕by*",
    "由amara.org社区提供的字幕",
    "由amara.org社群提供的字幕",
    "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
    "請不吝點贊 訂閱 轉發 打賞支持明鏡與點點欄目",
    "请不吝点赞订阅转发打赏支持明镜与点点栏目",
    "明镜需要您的支持 欢迎订阅明镜",
    "明鏡需要您的支持 歡迎訂閱明鏡",
    "谢谢观看",
    "謝謝觀看",
    "感谢观看",
    "感謝觀看",
    "谢谢收看",
    "謝謝收看",
    "中文字幕*",
    "优优独播剧场*",
    "優優獨播劇場*",
    # Japanese
    "ご視聴ありがとうございました",
    "ご視聴ありがとうございます",
    "チャンネル登録よろしくお願いします",
    "チャンネル登録お願いします",
    "チャンネル登録をお願いします",
    # Korean
    "시청해주셔서 감사합니다",
    "시청해 주셔서 감사합니다",
    "구독과 좋아요 부탁드립니다",
    "mbc 뉴스 *입니다",
    # French
    "merci d'avoir regardé",
    "sous-titres réalisés par la communauté d'amara.org",
    "sous-titrage *",
    # German
    "untertitel im auftrag des zdf*",
    "untertitelung des zdf*",
    "untertitel der amara.org-community",
    "untertitel von *",
    "vielen dank fürs zuschauen",
    # Spanish, Italian, Portuguese, Dutch
    "gracias por ver",
    "gracias por ver el video",
    "subtítulos realizados por la comunidad de amara.org",
    "subtítulos por la comunidad de amara.org",
    "sottotitoli creati dalla comunità amara.org",
    "grazie per la visione",
    "obrigado por assistir",
    "legendas pela comunidade amara.org",
    "ondertiteld door de amara.org gemeenschap",
    "ondertitels ingediend door de amara.org gemeenschap",
    # Russian
    "продолжение следует",
    "спасибо за просмотр",
    "субтитры сделал dimatorzok",
    "субтитры создавал dimatorzok",
    "редактор субтитров *",
)


@dataclass(frozen=True, slots=True)
class GuardOptions:
    """Thresholds of the hallucination guards (see the module docstring)."""

    # Turn every guard off: segments come back unchanged and nothing is removed.
    keep_all: bool = False
    # Whisper's no-speech rule: remove when no_speech_prob is above this ...
    no_speech_prob_threshold: float = 0.6
    # ... and avg_logprob below this.
    logprob_threshold: float = -1.0
    # Above this compression ratio a segment is suspect: loops need fewer repeats.
    compression_ratio_threshold: float = 2.4
    # A phrase repeated this many times in a row inside a segment is a loop.
    loop_min_repeats: int = 4
    # The same, in a segment whose compression ratio is above the threshold.
    loop_min_repeats_hinted: int = 3
    # A single word (or CJK character) must repeat this often to count as a loop.
    loop_min_repeats_single: int = 12
    # Longest repeated phrase looked for, in words (characters for Chinese and Japanese).
    loop_max_period: int = 16
    # A repeated run shorter than this (letters and digits; CJK characters count 2) is speech.
    loop_min_chars: int = 20
    # This many consecutive segments with the same text are a loop across segments.
    segment_loop_min_repeats: int = 3
    # Phrases Whisper writes over silence; "*" matches up to 40 characters.
    silence_phrases: tuple[str, ...] = SILENCE_PHRASES
    # VAD speech under less than this fraction of a segment counts as "little speech".
    min_speech_fraction: float = 0.5
    # Without VAD spans, a silence phrase goes only if no_speech_prob is at least this.
    silence_phrase_no_speech_prob: float = 0.3


# ---------------------------------------------------------------------------------------------
# Text helpers


def _normalise(text: str) -> str:
    """Letters, marks and digits only, NFKC and case folded."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LMN")


def _size(key: str) -> int:
    """Characters of a normalised key, wide (CJK) ones counting 2: they carry more text."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in key)


_WILDCARD = ".{0,40}"  # what "*" in a silence phrase stands for (bounded: no runaway matches)


@functools.lru_cache(maxsize=8)
def _silence_pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = []
    for phrase in phrases:
        parts = [re.escape(_normalise(part)) for part in phrase.split("*")]
        alternatives.append(_WILDCARD.join(parts))
    # Longest first, so "thank you for watching" is tried before "thank you".
    alternatives.sort(key=len, reverse=True)
    return re.compile("|".join(alternatives), re.DOTALL)


def _all_silence_phrases(key: str, pattern: re.Pattern[str]) -> bool:
    """Whether ``key`` is made only of silence phrases, one after another.

    Phrases are taken greedily from the left, not with a repeated regex group, which could
    backtrack exponentially on a long decoding loop.
    """
    pos = 0
    while pos < len(key):
        match = pattern.match(key, pos)
        if match is None or match.end() == pos:
            return False
        pos = match.end()
    return bool(key)


def _shorten(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _SpeechIndex:
    """Union of VAD speech spans, for fast 'how much speech under [a, b)' queries."""

    def __init__(self, spans: Sequence[tuple[float, float]]) -> None:
        merged: list[list[float]] = []
        for a, b in sorted((float(a), float(b)) for a, b in spans if b > a):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.starts = [a for a, _ in merged]
        self.ends = [b for _, b in merged]

    def fraction(self, start: float, end: float) -> float:
        if end <= start:  # a point: is it inside speech?
            k = bisect.bisect_right(self.starts, start) - 1
            return 1.0 if k >= 0 and self.ends[k] > start else 0.0
        covered = 0.0
        k = max(bisect.bisect_right(self.starts, start) - 1, 0)
        while k < len(self.starts) and self.starts[k] < end:
            covered += max(0.0, min(end, self.ends[k]) - max(start, self.starts[k]))
            k += 1
        return covered / (end - start)


# ---------------------------------------------------------------------------------------------
# Whole-segment guards


def _no_speech_reason(seg: Segment, speech: float | None, options: GuardOptions) -> str | None:
    if not (
        seg.no_speech_prob > options.no_speech_prob_threshold
        and seg.avg_logprob < options.logprob_threshold
    ):
        return None
    if speech is not None and speech >= options.min_speech_fraction:
        return None
    reason = (
        f"no speech: Whisper's no_speech_prob {seg.no_speech_prob:.2f} > "
        f"{options.no_speech_prob_threshold:g} and avg_logprob {seg.avg_logprob:.2f} < "
        f"{options.logprob_threshold:g}"
    )
    if speech is not None:
        reason += f"; VAD found speech under {speech:.0%} of it"
    return reason


def _silence_phrase_reason(seg: Segment, speech: float | None, options: GuardOptions) -> str | None:
    key = _normalise(seg.text)
    if not _all_silence_phrases(key, _silence_pattern(options.silence_phrases)):
        return None
    what = f"silence phrase: {_shorten(seg.text)!r} is text Whisper writes over silence"
    if speech is not None:
        if speech >= options.min_speech_fraction:
            return None
        return f"{what}, and VAD found speech under only {speech:.0%} of it"
    if seg.no_speech_prob < options.silence_phrase_no_speech_prob:
        return None
    return f"{what}, and Whisper's no_speech_prob is {seg.no_speech_prob:.2f}"


# ---------------------------------------------------------------------------------------------
# Loops inside a segment

# Han and kana: written without spaces, so a loop is looked for character by character.
_UNSPACED = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_UNIT = re.compile(rf"\s*(?:[{_UNSPACED}]|[^\s{_UNSPACED}]+)")


def _find_loop(
    keys: Sequence[str], start: int, options: GuardOptions, hinted: bool
) -> tuple[int, int, int] | None:
    """First (index, period, repeats) of a loop in ``keys`` at or after ``start``, or None."""
    n = len(keys)
    min_repeats = options.loop_min_repeats_hinted if hinted else options.loop_min_repeats
    min_repeats = max(min_repeats, 2)
    for i in range(start, n):
        if not keys[i]:
            continue
        best: tuple[int, int, int] | None = None
        for period in range(1, min(options.loop_max_period, (n - i) // min_repeats) + 1):
            need = max(min_repeats, options.loop_min_repeats_single) if period == 1 else min_repeats
            phrase = keys[i : i + period]
            repeats = 1
            while keys[i + repeats * period : i + (repeats + 1) * period] == phrase:
                repeats += 1
            if repeats < need or _size("".join(phrase)) * repeats < options.loop_min_chars:
                continue
            if best is None or period * repeats > best[1] * best[2]:
                best = (i, period, repeats)
        if best is not None:
            return best
    return None


def _collapse_units(
    keys: Sequence[str], options: GuardOptions, hinted: bool
) -> tuple[set[int], list[tuple[int, int, int]]]:
    """Indices of units to drop, and each loop found as (index, period, repeats)."""
    drop: set[int] = set()
    found: list[tuple[int, int, int]] = []
    start = 0
    while (loop := _find_loop(keys, start, options, hinted)) is not None:
        i, period, repeats = loop
        drop.update(range(i + period, i + period * repeats))
        found.append(loop)
        start = i + period * repeats
    return drop, found


def _loop_reason(phrase: str, repeats: int, hinted: bool, seg: Segment) -> str:
    reason = f"loop: {_shorten(phrase)!r} repeated {repeats} times in a row; kept the first"
    if hinted:
        reason += f" (compression ratio {seg.compression_ratio:.2f})"
    return reason


def _unloop(seg: Segment, options: GuardOptions) -> tuple[Segment, list[Removed]]:
    hinted = seg.compression_ratio > options.compression_ratio_threshold
    if seg.words:
        keys = [_normalise(w.word) for w in seg.words]
        drop, loops = _collapse_units(keys, options, hinted)
        if not loops:
            return seg, []
        removed = []
        for i, period, repeats in loops:
            gone = seg.words[i + period : i + period * repeats]
            removed.append(
                Removed(
                    start=gone[0].start,
                    end=max(w.end for w in gone),
                    text="".join(w.word for w in gone).strip(),
                    reason=_loop_reason(
                        "".join(w.word for w in seg.words[i : i + period]), repeats, hinted, seg
                    ),
                )
            )
        kept: tuple[Word, ...] = tuple(w for k, w in enumerate(seg.words) if k not in drop)
        end = seg.end if (len(seg.words) - 1) not in drop else max(w.end for w in kept)
        text = "".join(w.word for w in kept)
        return replace(seg, text=text, words=kept, end=end), removed
    units = [m.group(0) for m in _UNIT.finditer(seg.text)]
    keys = [_normalise(u) for u in units]
    drop, loops = _collapse_units(keys, options, hinted)
    if not loops:
        return seg, []
    removed = [
        Removed(
            start=seg.start,
            end=seg.end,
            text="".join(units[i + period : i + period * repeats]).strip(),
            reason=_loop_reason("".join(units[i : i + period]), repeats, hinted, seg),
        )
        for i, period, repeats in loops
    ]
    text = "".join(u for k, u in enumerate(units) if k not in drop)
    return replace(seg, text=text), removed


# ---------------------------------------------------------------------------------------------


def apply_guards(
    segments: Sequence[Segment],
    speech_spans_s: Sequence[tuple[float, float]] | None,
    options: GuardOptions | None = None,
) -> tuple[list[Segment], list[Removed]]:
    """Segments with hallucinations removed, and what was removed, in time order.

    ``speech_spans_s``: VAD speech as ``(start, end)`` seconds on the same clock as the
    segments, or None when VAD did not run (the silence-phrase guard then relies on Whisper's
    no_speech_prob).
    """
    options = options or GuardOptions()
    if options.keep_all:
        return list(segments), []
    index = _SpeechIndex(speech_spans_s) if speech_spans_s is not None else None
    removed: list[Removed] = []
    kept: list[Segment] = []
    for seg in segments:
        speech = index.fraction(seg.start, seg.end) if index is not None else None
        reason = _no_speech_reason(seg, speech, options) or _silence_phrase_reason(
            seg, speech, options
        )
        if reason is not None:
            removed.append(Removed(seg.start, seg.end, seg.text.strip(), reason))
            continue
        seg, cut = _unloop(seg, options)
        removed.extend(cut)
        kept.append(seg)

    # Loops across segments: the same text in a run of consecutive segments.
    out: list[Segment] = []
    k = 0
    while k < len(kept):
        key = _normalise(kept[k].text)
        run = k + 1
        while run < len(kept) and key and _normalise(kept[run].text) == key:
            run += 1
        repeats = run - k
        out.append(kept[k])
        if repeats >= options.segment_loop_min_repeats and _size(key) * repeats >= (
            options.loop_min_chars
        ):
            first = kept[k]
            for seg in kept[k + 1 : run]:
                removed.append(
                    Removed(
                        seg.start,
                        seg.end,
                        seg.text.strip(),
                        f"loop across segments: same text as the segment at {first.start:.2f} s,"
                        f" {repeats} segments in a row; kept the first",
                    )
                )
        else:
            out.extend(kept[k + 1 : run])
        k = run
    removed.sort(key=lambda r: (r.start, r.end))
    for item in removed:
        log.debug("removed %.2f-%.2f %r: %s", item.start, item.end, item.text, item.reason)
    if removed:
        log.info("hallucination guards removed %d item(s)", len(removed))
    return out, removed
