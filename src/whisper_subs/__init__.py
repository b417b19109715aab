"""whisper-subs: long audio and video to readable subtitles with Whisper, over a worker pool."""

from __future__ import annotations

__version__ = "0.1.0"
