"""``make demo``: transcribe the project's own sample with the embedded default model.

The sample (``data/demo.wav``, 33 s of English) was made by this project with espeak-ng; no
network and no GPU are needed.
"""

from __future__ import annotations

import logging
import shutil
import sys
from importlib import resources
from pathlib import Path

from .cli import main as cli_main

log = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0] if argv else "demo")
    out_dir.mkdir(parents=True, exist_ok=True)
    sample = out_dir / "demo.wav"
    with resources.as_file(resources.files("whisper_subs") / "data" / "demo.wav") as src:
        shutil.copyfile(src, sample)
    code = cli_main(
        ["transcribe", str(sample), "--format", "srt,json", "--output-dir", str(out_dir)]
    )
    srt = out_dir / "demo.srt"
    if code == 0 and srt.is_file():
        sys.stdout.write(f"\nSubtitles written to {srt.resolve()}:\n\n{srt.read_text()}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
