"""Cut a chunk's words into segments: sentences, split further at pauses and at a length cap.

Segments are what ``--cue-style segments`` and the JSON show; readable cues are built from the
words separately (``cues``). Pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence

from .types import Segment, Word

SENTENCE_END = (".", "?", "!", "。", "？", "！", "…")
CLAUSE_END = (",", ";", ":", "，", "；", "：", "、")
MAX_SEGMENT_S = 12.0  # longer sentences are cut at a clause mark or the widest pause
PAUSE_S = 1.0  # a pause this long ends a segment even inside a sentence
SHORT_PAUSE_S = 0.3  # ... and this long, once the segment has MIN_SPLIT_S of speech
MIN_SPLIT_S = 1.0


def segments_from_words(
    words: Sequence[Word],
    avg_logprob: float = 0.0,
    no_speech_prob: float = 0.0,
    compression_ratio: float = 1.0,
) -> list[Segment]:
    """Group ``words`` (in order) into segments; every word lands in exactly one segment."""
    groups: list[list[Word]] = []
    current: list[Word] = []
    for i, word in enumerate(words):
        current.append(word)
        nxt = words[i + 1] if i + 1 < len(words) else None
        pause = nxt.start - word.end if nxt is not None else 0.0
        long_enough = word.end - current[0].start >= MIN_SPLIT_S
        if (
            nxt is None
            or word.word.strip().endswith(SENTENCE_END)
            or pause >= PAUSE_S
            or (pause >= SHORT_PAUSE_S and long_enough)
        ):
            groups.extend(_cap_length(current))
            current = []
    return [
        Segment(
            start=group[0].start,
            end=group[-1].end,
            text="".join(w.word for w in group),
            words=tuple(group),
            avg_logprob=avg_logprob,
            no_speech_prob=no_speech_prob,
            compression_ratio=compression_ratio,
        )
        for group in groups
    ]


def resegment(segments: Sequence[Segment]) -> list[Segment]:
    """Split segments again after their word times changed (e.g. snapped to VAD pauses)."""
    return [
        piece
        for s in segments
        for piece in (
            segments_from_words(s.words, s.avg_logprob, s.no_speech_prob, s.compression_ratio)
            if s.words
            else [s]
        )
    ]


def _cap_length(words: list[Word]) -> list[list[Word]]:
    if len(words) < 2 or words[-1].end - words[0].start <= MAX_SEGMENT_S:
        return [words]

    def score(k: int) -> tuple[bool, float]:  # cut after word k
        return (words[k].word.strip().endswith(CLAUSE_END), words[k + 1].start - words[k].end)

    # Cut near the middle: among the middle half, prefer a clause mark, then the widest pause.
    lo, hi = len(words) // 4, max(len(words) // 4 + 1, 3 * len(words) // 4)
    k = max(range(lo, min(hi, len(words) - 1)), key=score)
    return _cap_length(words[: k + 1]) + _cap_length(words[k + 1 :])
