from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_subs.sentences import MAX_SEGMENT_S, segments_from_words
from whisper_subs.types import Word


def words_from(texts: list[str], gaps: list[float]) -> list[Word]:
    t, words = 0.0, []
    for text, gap in zip(texts, gaps, strict=True):
        words.append(Word(t, t + 0.3, text))
        t += 0.3 + gap
    return words


def test_sentences_and_pauses_end_segments() -> None:
    words = words_from(
        [" Hello", " world.", " How", " are", " you", " today?"], [0.1] * 2 + [0.1, 1.2, 0.1, 0]
    )
    texts = [s.text for s in segments_from_words(words)]
    assert texts == [" Hello world.", " How are", " you today?"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([" a", " bb,", " ccc.", " d?", " ee", "中", "文。"]), st.floats(0, 2.0)
        ),
        max_size=200,
    )
)
def test_every_word_lands_in_exactly_one_segment_in_order(items: list[tuple[str, float]]) -> None:
    words = words_from([t for t, _ in items], [g for _, g in items])
    segments = segments_from_words(words)
    assert [w for s in segments for w in s.words] == words
    for s in segments:
        assert s.text == "".join(w.word for w in s.words)
        long_enough_to_cut = len(s.words) >= 2
        assert s.end - s.start <= MAX_SEGMENT_S or not long_enough_to_cut
