"""Language tags as users give them (``zh-TW``) and the codes Whisper knows (``zh``)."""

from __future__ import annotations

from .errors import UsageError


def normalize_language(tag: str | None) -> tuple[str | None, str | None]:
    """``zh-TW`` -> (``zh``, ``zh-TW``): the code Whisper knows, and the tag as given.

    None, "" and "auto" mean: detect (``(None, None)``). An unknown code is a UsageError.
    """
    if tag is None or tag.strip().lower() in ("", "auto"):
        return None, None
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    code = tag.strip().replace("_", "-").split("-")[0].lower()
    if code not in _LANGUAGE_CODES:
        raise UsageError(
            f"unknown language {tag!r}: give a Whisper language code such as en, de, zh or zh-TW "
            "(or auto)"
        )
    return code, tag.strip()
