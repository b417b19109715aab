"""Hallucination guards on crafted segments."""

from __future__ import annotations

import pytest

from whisper_subs.guards import GuardOptions, apply_guards
from whisper_subs.types import Segment, Word


def seg(start: float, end: float, text: str, **kwargs: float) -> Segment:
    return Segment(start, end, text, **kwargs)


def worded(start: float, pieces: list[str], step: float = 0.3, **kwargs: float) -> Segment:
    words = tuple(Word(start + k * step, start + (k + 1) * step, p) for k, p in enumerate(pieces))
    return Segment(start, words[-1].end, "".join(pieces), words, **kwargs)


SPEECH_EVERYWHERE = [(0.0, 1000.0)]


def test_clean_segments_pass_untouched() -> None:
    segments = [seg(0, 2, " Hello there."), seg(2, 4, " How are you?")]
    kept, removed = apply_guards(segments, SPEECH_EVERYWHERE)
    assert kept == segments and removed == []


def test_keep_all_turns_everything_off() -> None:
    segments = [seg(0, 2, " Thanks for watching!", no_speech_prob=0.9, avg_logprob=-2)]
    kept, removed = apply_guards(segments, [], GuardOptions(keep_all=True))
    assert kept == segments and removed == []


def test_no_speech_rule() -> None:
    bad = seg(5, 8, " Some words.", no_speech_prob=0.8, avg_logprob=-1.4)
    unsure = seg(9, 10, " Other words.", no_speech_prob=0.8, avg_logprob=-0.5)
    kept, removed = apply_guards([bad, unsure], None)
    assert kept == [unsure]
    assert [(r.start, r.end, r.text) for r in removed] == [(5, 8, "Some words.")]
    assert "no_speech_prob 0.80 > 0.6" in removed[0].reason
    assert "avg_logprob -1.40 < -1" in removed[0].reason


def test_no_speech_rule_defers_to_vad_speech() -> None:
    bad = seg(5, 8, " Some words.", no_speech_prob=0.8, avg_logprob=-1.4)
    kept, _ = apply_guards([bad], [(4.0, 9.0)])
    assert kept == [bad]
    kept, removed = apply_guards([bad], [(0.0, 1.0)])
    assert kept == [] and "VAD found speech under 0% of it" in removed[0].reason


@pytest.mark.parametrize(
    "text",
    [
        " Thanks for watching!",
        " Thank you for watching.",
        " THANK YOU FOR WATCHING",
        " Subtitles by the Amara.org community",
        "字幕由Amara.org社区提供",
        "字幕由 索兰娅 提供",
        "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
        "ご視聴ありがとうございました",
        " Thank you. Thank you. Bye.",
        " you",
        " Untertitel im Auftrag des ZDF, 2017",
    ],
)
def test_silence_phrases_over_silence_are_removed(text: str) -> None:
    segments = [seg(0.0, 2.0, " Real speech here."), seg(10.0, 12.0, text)]
    kept, removed = apply_guards(segments, [(0.0, 2.0), (11.8, 12.0)])
    assert [s.text for s in kept] == [" Real speech here."]
    (item,) = removed
    assert (item.start, item.end, item.text) == (10.0, 12.0, text.strip())
    assert item.reason.startswith("silence phrase:")
    assert "VAD found speech under only 10% of it" in item.reason


def test_silence_phrase_kept_when_vad_hears_speech() -> None:
    segments = [seg(10.0, 12.0, " Thank you for watching.")]
    kept, removed = apply_guards(segments, [(9.0, 13.0)])
    assert kept == segments and removed == []


def test_silence_phrase_inside_real_sentence_is_kept() -> None:
    segments = [seg(10.0, 12.0, " Thank you for watching my kids last night.")]
    kept, removed = apply_guards(segments, [])
    assert kept == segments and removed == []


def test_silence_phrase_without_vad_uses_no_speech_prob() -> None:
    confident = seg(0, 2, " Thank you.", no_speech_prob=0.05)
    doubtful = seg(3, 5, " Thank you.", no_speech_prob=0.45)
    kept, removed = apply_guards([confident, doubtful], None)
    assert kept == [confident]
    assert "no_speech_prob is 0.45" in removed[0].reason


def test_loop_inside_segment_with_words_keeps_first_copy() -> None:
    pieces = [" And", " then", " we", " left."] + [" I'm", " so", " sorry."] * 5
    segment = worded(0.0, pieces)
    kept, removed = apply_guards([segment], SPEECH_EVERYWHERE)
    (out,) = kept
    assert out.text == " And then we left. I'm so sorry."
    assert [w.word for w in out.words] == [
        " And",
        " then",
        " we",
        " left.",
        " I'm",
        " so",
        " sorry.",
    ]
    assert out.end == pytest.approx(out.words[-1].end)
    (item,) = removed
    assert item.text == "I'm so sorry. " * 3 + "I'm so sorry."
    assert item.start == pytest.approx(7 * 0.3) and item.end == pytest.approx(segment.end)
    assert "repeated 5 times in a row; kept the first" in item.reason


def test_loop_inside_segment_without_words() -> None:
    text = " Okay, " + "la la la di da " * 5 + "and that's it."
    kept, removed = apply_guards([seg(0, 9, text)], SPEECH_EVERYWHERE)
    assert kept[0].text == " Okay, la la la di da and that's it."
    assert (removed[0].start, removed[0].end) == (0, 9)


def test_chinese_loop_per_character_when_no_words() -> None:
    text = "我们走吧。" + "你好吗你好吗" * 3
    kept, removed = apply_guards([seg(0, 5, text)], SPEECH_EVERYWHERE)
    assert kept[0].text == "我们走吧。你好吗"
    assert "repeated 6 times" in removed[0].reason


def test_real_repetition_is_kept() -> None:
    segments = [
        seg(0, 2, " No, no, no, no, please."),
        seg(2, 4, "哈哈哈哈哈哈"),
        seg(4, 6, " I said it again and again and again."),
    ]
    kept, removed = apply_guards(segments, SPEECH_EVERYWHERE)
    assert kept == segments and removed == []


def test_compression_ratio_lowers_the_bar() -> None:
    text = " We should go now. We should go now. We should go now."
    plain = seg(0, 5, text, compression_ratio=1.5)
    suspect = seg(0, 5, text, compression_ratio=3.1)
    assert apply_guards([plain], SPEECH_EVERYWHERE)[1] == []
    kept, removed = apply_guards([suspect], SPEECH_EVERYWHERE)
    assert kept[0].text == " We should go now."
    assert "compression ratio 3.10" in removed[0].reason


def test_loop_across_segments() -> None:
    segments = [seg(0, 2, " Let's begin.")] + [
        seg(2.0 + 2 * k, 4.0 + 2 * k, " The meeting is adjourned.") for k in range(4)
    ]
    kept, removed = apply_guards(segments, SPEECH_EVERYWHERE)
    assert [s.start for s in kept] == [0, 2.0]
    assert [r.start for r in removed] == [4.0, 6.0, 8.0]
    assert all("4 segments in a row" in r.reason for r in removed)


def test_two_equal_segments_are_not_a_loop() -> None:
    segments = [seg(0, 2, " Are you sure about this?"), seg(3, 5, " Are you sure about this?")]
    kept, removed = apply_guards(segments, SPEECH_EVERYWHERE)
    assert kept == segments and removed == []


def test_removed_is_in_time_order_and_nothing_is_lost() -> None:
    segments = [
        seg(0, 2, " Thanks for watching!", no_speech_prob=0.9, avg_logprob=-2),
        worded(3.0, [" Good", " morning."] + [" Yes", " indeed,"] * 6),
        seg(20, 22, " Subtitles by the Amara.org community"),
    ]
    _kept, removed = apply_guards(segments, [(3.0, 10.0)])
    assert [r.start for r in removed] == sorted(r.start for r in removed)
    assert len(removed) == 3
    assert all(r.reason for r in removed)


def test_long_decoding_loop_is_fast() -> None:
    text = "字幕由X提供" * 200 + "真的"
    kept, removed = apply_guards([seg(0, 30, text)], [])
    assert len(kept) == 1 and "repeated 200 times" in removed[0].reason
