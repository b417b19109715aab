"""Fetch the best audio of a URL into a folder with yt-dlp (as a library, not a subprocess).

yt-dlp knows thousands of sites and plain links to media files alike. Its errors, and a file that
is larger than allowed, become one DownloadError with the URL and yt-dlp's own reason. A finished
download leaves a marker, so a job that is resumed after a restart does not fetch it again.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import DownloadError, UsageError

log = logging.getLogger(__name__)

MARKER = ".downloaded"  # holds the file name of a finished download
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True, slots=True)
class Downloaded:
    path: Path
    title: str  # the page's or file's title, for display and output names


def check_url(url: str) -> str:
    """The URL stripped, or UsageError: only http(s) URLs are fetched (never file:// or others)."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"url must be an http:// or https:// address, got {url!r}")
    return text


class _Logger:
    """yt-dlp's logger interface, into ours (it would print otherwise)."""

    def debug(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    def info(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    def warning(self, message: str) -> None:
        log.info("yt-dlp: %s", message)

    def error(self, message: str) -> None:
        log.info("yt-dlp: %s", message)


def _reason(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip()
    return text.removeprefix("ERROR:").strip() or type(exc).__name__


def fetch_audio(url: str, folder: Path, max_bytes: int | None = None) -> Downloaded:
    """Download ``url``'s best audio into ``folder`` (made if missing); reuse a finished one."""
    url = check_url(url)
    marker = folder / MARKER
    if marker.is_file():
        name = marker.read_text(encoding="utf-8").strip()
        if name and (folder / name).is_file():
            log.info("reusing the download of %s: %s", url, folder / name)
            return Downloaded(folder / name, Path(name).stem)
    from yt_dlp import YoutubeDL
    from yt_dlp.utils import YoutubeDLError

    shutil.rmtree(folder, ignore_errors=True)  # a half-finished earlier attempt
    folder.mkdir(parents=True)
    options = {
        "format": "bestaudio/best",  # a plain link to a file has one format, not marked audio
        "outtmpl": str(folder / "input.%(ext)s"),
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _Logger(),
        "socket_timeout": 30,
        "retries": 3,
        "max_filesize": max_bytes,
        "restrictfilenames": True,
    }
    try:
        with YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
            if info is None:
                raise DownloadError(f"{url}: yt-dlp found nothing to download there")
            if info.get("_type") == "playlist":
                raise DownloadError(f"{url} is a playlist: submit one item's URL per job")
            downloads = info.get("requested_downloads") or [{}]
            path = Path(downloads[0].get("filepath") or ydl.prepare_filename(info))
    except YoutubeDLError as exc:
        raise DownloadError(f"cannot download {url}: {_reason(exc)}") from exc
    except OSError as exc:
        raise DownloadError(f"cannot save the download of {url} in {folder}: {exc}") from exc
    if not path.is_file():
        # yt-dlp skips a file over max_filesize with a message instead of an error.
        limit = f" (the limit is {max_bytes / 1e6:.0f} MB)" if max_bytes else ""
        raise DownloadError(f"{url}: nothing was downloaded; the file may be too large{limit}")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: the download is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit"
        )
    marker.write_text(path.name, encoding="utf-8")
    title = str(info.get("title") or path.stem)
    log.info("downloaded %s (%.1f MB) to %s", url, size / 1e6, path)
    return Downloaded(path, title)
