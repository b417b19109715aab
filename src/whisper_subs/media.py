"""Decode any media PyAV/ffmpeg can read to 16 kHz mono float32, and find the inputs of a run.

Decoding follows faster_whisper.audio.decode_audio (s16 resampling, frames grouped), but
errors are not swallowed: a missing, empty, non-media or truncated input raises MediaError
with one line that says which and why.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np

from .errors import MediaError
from .types import SAMPLE_RATE

log = logging.getLogger(__name__)

# A decoded length this far below what the container declares means the file was cut short.
TRUNCATION_TOLERANCE = 0.97
TRUNCATION_MIN_MISSING_S = 0.5

MEDIA_SUFFIXES = frozenset(
    [
        ".wav",
        ".flac",
        ".mp3",
        ".m4a",
        ".aac",
        ".ogg",
        ".oga",
        ".opus",
        ".wma",
        ".webm",
        ".mp4",
        ".m4v",
        ".mkv",
        ".mov",
        ".avi",
        ".mpg",
        ".mpeg",
        ".ts",
        ".3gp",
        ".amr",
        ".aiff",
        ".aif",
        ".caf",
        ".mka",
        ".wv",
        ".ac3",
    ]
)


def decode_audio(path: str | Path) -> np.ndarray:
    """Decode ``path``'s first audio stream to mono float32 at 16 kHz."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, not a media file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty")
    _check_riff_size(path)
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(f"{path}: not a media file ffmpeg can read ({exc})") from exc
    with container:
        if not container.streams.audio:
            raise MediaError(f"{path}: not a media file with sound (no audio stream found)")
        stream = container.streams.audio[0]
        declared_s = _declared_duration_s(container, stream)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        pieces: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None  # resample by sample count, not by (possibly broken) timestamps
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            decoded_s = sum(p.size for p in pieces) / SAMPLE_RATE
            raise MediaError(
                f"{path}: decoding failed after {decoded_s:.1f} s ({exc}); the file is damaged "
                "or truncated"
            ) from exc
        finally:
            del resampler
            gc.collect()  # PyAV resampler objects are freed late (faster-whisper issue #390)
    audio = (
        np.concatenate(pieces).astype(np.float32) / 32768.0
        if pieces
        else np.zeros(0, dtype=np.float32)
    )
    decoded_s = audio.size / SAMPLE_RATE
    if audio.size == 0:
        raise MediaError(f"{path}: no audio could be decoded (empty or truncated stream)")
    if (
        declared_s
        and decoded_s < declared_s * TRUNCATION_TOLERANCE
        and (declared_s - decoded_s > TRUNCATION_MIN_MISSING_S)
    ):
        raise MediaError(
            f"{path}: truncated: decoded {decoded_s:.1f} s of the {declared_s:.1f} s the "
            "container declares"
        )
    return audio


def _check_riff_size(path: Path) -> None:
    """A WAV whose data chunk claims more bytes than the file has was cut short.

    ffmpeg trusts the file size for WAV, so the declared-duration check cannot see this.
    Streaming writers leave 0 or 0xFFFFFFFF as the size: those are not checked.
    """
    with path.open("rb") as fh:
        head = fh.read(4096)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            if size in (0, 0xFFFFFFFF):
                return
            available = path.stat().st_size - (pos + 8)
            if available < size * TRUNCATION_TOLERANCE:
                raise MediaError(
                    f"{path}: truncated: the WAV header declares {size} bytes of audio, the file "
                    f"holds {max(0, available)}"
                )
            return
        pos += 8 + size + (size & 1)


def _declared_duration_s(container: av.container.InputContainer, stream: av.AudioStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def find_inputs(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Yield the files to transcribe: files as given, folders walked recursively (media only)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES
            )
            if not found:
                log.warning("%s: folder holds no media files", path)
            yield from found
        else:
            yield path  # decode_audio reports a missing or bad file


def probe_duration(path: str | Path) -> float | None:
    """The duration a container declares, without decoding (None when it does not say)."""
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                return None
            return _declared_duration_s(container, container.streams.audio[0]) or None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        return None
