from __future__ import annotations

import whisper_subs
from conftest import normalize_text, shared_file


def test_transcribe_one_file_with_a_shared_pool(cpu_pool: object) -> None:
    transcript = whisper_subs.transcribe(shared_file("openai-whisper/jfk.flac"), pool=cpu_pool)
    assert transcript.language == "en"
    assert "ask not what your country can do for you" in normalize_text(
        " ".join(s.text for s in transcript.segments)
    )
    assert transcript.cues and transcript.cues[0].start < 1.0
