"""Chinese script conversion (Simplified <-> Traditional) with OpenCC, keeping word timings.

Whisper writes Chinese in whichever script its decoding drifts to, often mixing both in one
file; ``--script`` fixes that. Configurations (OpenCC's own names):

* traditional: ``s2t`` (OpenCC standard), Taiwan ``s2twp`` (Taiwan characters and phrases:
  软件 -> 軟體), Hong Kong and Macau ``s2hk``.
* simplified: ``tw2s`` then ``hk2s``, whatever the region: both take Traditional text of any
  standard to Simplified, and between them they also fold the Taiwan and Hong Kong variant
  characters that plain ``t2s`` leaves alone (著 -> 着, 衞 -> 卫). Known quirk: a lone 么 (not in
  什么, 这么 ...) becomes 幺.

Every configuration but ``s2twp`` maps one character to one character, so converted text has
the length of its source and each word keeps its own characters. ``s2twp`` rewrites phrases
(内存 -> 記憶體); where such a phrase spans several words, those words are merged into one
word covering their times (a boundary between words is kept where converting the two sides
apart gives the same text as converting them together).

OpenCC is imported on first use, so the rest of the package works without it.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

from .errors import UsageError
from .types import Segment, Word

log = logging.getLogger(__name__)

Script = Literal["simplified", "traditional"]
ScriptChoice = Literal["simplified", "traditional", "auto"]

_TRADITIONAL_REGIONS = frozenset({"tw", "hk", "mo"})
_SIMPLIFIED_REGIONS = frozenset({"cn", "sg", "my"})


def _subtags(language_tag: str | None) -> list[str]:
    return [s for s in re.split(r"[-_]", (language_tag or "").strip().lower()) if s]


def _region(region: str | None) -> str | None:
    """``"TW"``, ``"zh-TW"``, ``"zh_Hant_HK"`` -> ``"tw"``/``"hk"``; None when there is none."""
    for subtag in reversed(_subtags(region)):
        if len(subtag) == 2 and subtag.isalpha():
            return subtag
    return None


def resolve_script(choice: str, language_tag: str | None) -> Script | None:
    """The script to convert to, or None to leave the text as Whisper wrote it.

    ``"simplified"`` and ``"traditional"`` are taken as they are. ``"auto"`` follows the
    language tag: zh-TW, zh-HK, zh-MO or zh-Hant -> traditional; zh-CN, zh-SG, zh-MY or
    zh-Hans -> simplified; anything else (plain ``zh``, other languages, None) -> None.
    """
    if choice in ("simplified", "traditional"):
        return choice  # type: ignore[return-value]
    if choice != "auto":
        raise UsageError(f"Unknown script {choice!r}; use 'simplified', 'traditional' or 'auto'.")
    subtags = _subtags(language_tag)
    if not subtags or subtags[0] not in ("zh", "yue", "cmn"):
        return None
    rest = subtags[1:]
    if "hant" in rest or _TRADITIONAL_REGIONS.intersection(rest):
        return "traditional"
    if "hans" in rest or _SIMPLIFIED_REGIONS.intersection(rest):
        return "simplified"
    return None


def opencc_configs(target: Script, region: str | None = None) -> tuple[str, ...]:
    """OpenCC configuration names applied in turn for ``target`` (see the module docstring)."""
    if target == "simplified":
        return ("tw2s", "hk2s")
    if target == "traditional":
        code = _region(region)
        if code == "tw":
            return ("s2twp",)
        if code in ("hk", "mo"):
            return ("s2hk",)
        return ("s2t",)
    raise UsageError(f"Unknown script {target!r}; use 'simplified' or 'traditional'.")


@functools.cache
def _converter(config: str) -> Callable[[str], str]:
    try:
        import opencc
    except ImportError as exc:
        raise UsageError(
            "Converting Chinese script needs OpenCC: pip install opencc (or leave --script unset)."
        ) from exc
    try:
        return opencc.OpenCC(f"{config}.json").convert
    except Exception as exc:  # OpenCC raises bare RuntimeError for a missing config
        raise UsageError(f"OpenCC cannot load configuration {config!r}: {exc}") from exc


def convert_script(text: str, target: Script, region: str | None = None) -> str:
    """``text`` in the ``target`` script; ``region`` (``"TW"``, ``"zh-HK"``...) picks the
    regional standard for Traditional."""
    for config in opencc_configs(target, region):
        text = _converter(config)(text)
    return text


def _convert_words(words: Sequence[Word], convert: Callable[[str], str]) -> list[Word]:
    """Words converted together (phrases that span words still convert), timings kept."""
    source = "".join(w.word for w in words)
    target = convert(source)
    bounds = [0]
    for w in words:
        bounds.append(bounds[-1] + len(w.word))
    if len(target) == len(source):
        return [
            replace(w, word=target[a:b])
            for w, a, b in zip(words, bounds[:-1], bounds[1:], strict=True)
        ]
    # Length changed (s2twp phrases). A word boundary is clean where converting the text on
    # either side apart gives the same as converting it whole; words between clean boundaries
    # (a rewritten phrase spans them) are merged into one word.
    out: list[Word] = []
    first, mapped = 0, 0
    for k in range(1, len(words) + 1):
        if k < len(words):
            head = convert(source[: bounds[k]])
            if head + convert(source[bounds[k] :]) != target:
                continue
            end = len(head)
        else:
            end = len(target)
        group = words[first:k]
        out.append(
            Word(
                start=group[0].start,
                end=max(w.end for w in group),
                word=target[mapped:end],
                probability=min(w.probability for w in group),
            )
        )
        first, mapped = k, end
    return out


def convert_segments(
    segments: Sequence[Segment], target: Script, region: str | None = None
) -> list[Segment]:
    """Segments with their text and words converted to ``target``; times unchanged."""

    def convert(text: str) -> str:
        return convert_script(text, target, region)

    out = []
    for seg in segments:
        words = tuple(_convert_words(seg.words, convert)) if seg.words else seg.words
        out.append(replace(seg, text=convert(seg.text), words=words))
    return out
