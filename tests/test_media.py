from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from conftest import shared_file
from whisper_subs.errors import MediaError
from whisper_subs.media import decode_audio, find_inputs
from whisper_subs.types import SAMPLE_RATE


def test_decodes_stereo_44k_flac_to_16k_mono_float32() -> None:
    audio = decode_audio(shared_file("openai-whisper/jfk.flac"))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / SAMPLE_RATE - 11.0) < 0.05
    assert 0.05 < float(np.abs(audio).max()) <= 1.0


def test_stereo_is_mixed_down_not_one_channel() -> None:
    path = shared_file("faster-whisper/stereo_diarization.wav")
    with av.open(str(path)) as container:
        assert container.streams.audio[0].format.name == "s16"  # packed, interleaved
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    raw = np.concatenate(frames).astype(np.float32) / 32768.0
    left, right = raw[0::2], raw[1::2]
    mixed = decode_audio(path)
    # Each channel holds its own sentence; the mix carries the energy of both.
    n = min(mixed.size, left.size)
    assert np.corrcoef(mixed[:n], left[:n])[0, 1] > 0.3
    assert np.corrcoef(mixed[:n], right[:n])[0, 1] > 0.3


def make_video(tmp_path: Path, audio: np.ndarray) -> Path:
    """An MP4 with an H.264-or-MPEG-4 video track and an AAC audio track, made here."""
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        for i in range(int(audio.size / SAMPLE_RATE * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i % 255, np.uint8), "rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
        samples = (audio * 32767).astype(np.int16).reshape(1, -1)
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, start : start + 1024], "s16", "mono")
            frame.sample_rate = SAMPLE_RATE
            for packet in sound.encode(frame):
                out.mux(packet)
        for stream in (video, sound):
            for packet in stream.encode(None):
                out.mux(packet)
    return path


def test_video_container_is_decoded(tmp_path: Path) -> None:
    audio = decode_audio(shared_file("openai-whisper/jfk.flac"))
    video = make_video(tmp_path, audio)
    decoded = decode_audio(video)
    assert abs(decoded.size - audio.size) < SAMPLE_RATE * 0.2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.wav", None, "no such file"),
        ("empty.wav", b"", "empty"),
        ("notes.txt", b"this is not audio\n" * 50, "not a media file"),
    ],
)
def test_bad_inputs_raise_one_line_media_errors(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=message) as info:
        decode_audio(path)
    assert "\n" not in str(info.value)


def test_truncated_flac_is_an_error(tmp_path: Path) -> None:
    data = shared_file("openai-whisper/jfk.flac").read_bytes()
    path = tmp_path / "cut.flac"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError, match=r"truncated|damaged"):
        decode_audio(path)


def test_truncated_wav_is_an_error(tmp_path: Path) -> None:
    data = shared_file("faster-whisper/stereo_diarization.wav").read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated"):
        decode_audio(path)


def test_find_inputs_walks_folders_for_media_only(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.flac").write_bytes(b"x")
    (tmp_path / "a" / "y.mp4").write_bytes(b"x")
    (tmp_path / "a" / "notes.txt").write_text("x")
    found = list(find_inputs([tmp_path, tmp_path / "given.txt"]))
    assert [p.name for p in found] == ["x.flac", "y.mp4", "given.txt"]
