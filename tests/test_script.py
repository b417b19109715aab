"""Chinese script conversion with OpenCC."""

from __future__ import annotations

import pytest

from whisper_subs.errors import UsageError
from whisper_subs.script import (
    convert_script,
    convert_segments,
    opencc_configs,
    resolve_script,
)
from whisper_subs.types import Segment, Word

pytest.importorskip("opencc")

SIMPLIFIED = "这个软件的鼠标和内存，头发发展，里面干燥，后来皇后，台湾的计算机程序。"
# Characters that exist only in Simplified (their Traditional forms differ).
SIMPLIFIED_ONLY = set("这个软标内头发里来湾计机")


@pytest.mark.parametrize(
    ("choice", "tag", "expected"),
    [
        ("simplified", None, "simplified"),
        ("traditional", "en", "traditional"),
        ("auto", "zh-TW", "traditional"),
        ("auto", "zh_hk", "traditional"),
        ("auto", "zh-Hant", "traditional"),
        ("auto", "zh-Hant-TW", "traditional"),
        ("auto", "zh-CN", "simplified"),
        ("auto", "zh-SG", "simplified"),
        ("auto", "zh-Hans", "simplified"),
        ("auto", "zh", None),
        ("auto", "en-US", None),
        ("auto", None, None),
    ],
)
def test_resolve_script(choice: str, tag: str | None, expected: str | None) -> None:
    assert resolve_script(choice, tag) == expected


def test_resolve_script_rejects_unknown_choice() -> None:
    with pytest.raises(UsageError, match="Unknown script 'klingon'"):
        resolve_script("klingon", "zh")


def test_configs_per_region() -> None:
    assert opencc_configs("traditional", None) == ("s2t",)
    assert opencc_configs("traditional", "zh-TW") == ("s2twp",)
    assert opencc_configs("traditional", "HK") == ("s2hk",)
    assert opencc_configs("simplified", "TW") == ("tw2s", "hk2s")


@pytest.mark.parametrize("region", [None, "TW", "zh-HK"])
def test_traditional_has_no_simplified_only_characters(region: str | None) -> None:
    traditional = convert_script(SIMPLIFIED, "traditional", region)
    assert not SIMPLIFIED_ONLY & set(traditional)
    assert convert_script(traditional, "traditional", region) == traditional  # idempotent
    back = convert_script(traditional, "simplified")
    assert back != traditional
    assert not set("這個軟體標頭髮裡裏後來臺灣") & set(back)


def test_round_trip_without_regional_phrases() -> None:
    traditional = convert_script(SIMPLIFIED, "traditional")
    assert len(traditional) == len(SIMPLIFIED)
    assert convert_script(traditional, "simplified") == SIMPLIFIED
    assert convert_script(SIMPLIFIED, "simplified") == SIMPLIFIED  # idempotent


def test_simplified_folds_taiwan_and_hong_kong_variants() -> None:
    assert convert_script("看著裡面的衞生", "simplified") == "看着里面的卫生"


def test_latin_text_is_left_alone() -> None:
    assert convert_script(" Hello, world 42", "traditional", "TW") == " Hello, world 42"


def _segment(pieces: list[str]) -> Segment:
    words = tuple(Word(float(k), k + 0.5, p, 0.9) for k, p in enumerate(pieces))
    return Segment(0.0, len(pieces) - 0.5, "".join(pieces), words)


def test_segments_keep_word_timings() -> None:
    seg = _segment(["我们", "发现", "头发", "里面", "有", " AI", "。"])
    (out,) = convert_segments([seg], "traditional")
    assert out.text == "我們發現頭髮裏面有 AI。"
    assert [w.word for w in out.words] == ["我們", "發現", "頭髮", "裏面", "有", " AI", "。"]
    assert [(w.start, w.end, w.probability) for w in out.words] == [
        (w.start, w.end, w.probability) for w in seg.words
    ]
    assert (out.start, out.end) == (seg.start, seg.end)


def test_taiwan_phrases_merge_words_they_span() -> None:
    seg = _segment(["我们", "用", "内", "存", "和", "鼠", "标", "，", "软件", "很好。"])
    (out,) = convert_segments([seg], "traditional", "zh-TW")
    assert out.text == "我們用記憶體和滑鼠，軟體很好。"
    assert [(w.word, w.start, w.end) for w in out.words] == [
        ("我們", 0.0, 0.5),
        ("用", 1.0, 1.5),
        ("記憶體", 2.0, 3.5),
        ("和", 4.0, 4.5),
        ("滑鼠", 5.0, 6.5),
        ("，", 7.0, 7.5),
        ("軟體", 8.0, 8.5),
        ("很好。", 9.0, 9.5),
    ]
    assert "".join(w.word for w in out.words) == out.text


def test_segments_without_words() -> None:
    (out,) = convert_segments([Segment(1.0, 2.0, "头发")], "traditional")
    assert out == Segment(1.0, 2.0, "頭髮")


@pytest.mark.parametrize(("target", "region"), [("traditional", None), ("traditional", "HK")])
def test_character_configs_preserve_length(target: str, region: str | None) -> None:
    every_han = "".join(chr(c) for c in range(0x4E00, 0xA000))
    traditional = convert_script(every_han, target, region)  # type: ignore[arg-type]
    assert len(traditional) == len(every_han)
    assert len(convert_script(traditional, "simplified")) == len(every_han)
