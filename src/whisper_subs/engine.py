"""The engine: a batch of chunk audio in, chunk-relative segments with words out.

``FasterWhisperEngine`` drives faster-whisper's CTranslate2 model directly so that one batch of
chunks is encoded once, its languages are read from that same encoder output, all chunks are
beam-searched together (one ``generate`` call) and their words aligned together (one ``align``).

Chunks are decoded as text only (no timestamp tokens): a chunk is at most one 30 s window cut at
pauses, so the model sees all of it at once. With timestamp tokens the model often stops at a
timestamp before the window ends; the sequential path then decodes the rest as a new window (a
second encoder pass) and the batched pipeline drops it. Word times come from the cross-attention
alignment instead, and segments are cut from the words (``sentences.segments_from_words``).
Only chunks whose output looks wrong (too repetitive, too unlikely) are decoded again, alone, with
faster-whisper's own temperature fallback.

``FakeEngine`` ships beside it for scheduling and failure tests and for ``bench --simulate``.
Engines are built inside worker processes from a picklable ``EngineSpec``.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import ModelNotFoundError, OutOfMemoryError, UsageError
from .sentences import segments_from_words
from .types import SAMPLE_RATE, ChunkResult, Segment, Word

log = logging.getLogger(__name__)

TASKS = ("transcribe", "translate")


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """How to decode; the same for every chunk of one input."""

    language: str | None = None  # None: detect per chunk from the encoder output
    task: str = "transcribe"  # or "translate" (to English)
    beam_size: int = 5
    initial_prompt: str | None = None
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # fallback ladder
    compression_ratio_threshold: float = 2.4  # above: too repetitive, decode again
    log_prob_threshold: float = -1.0  # below: too unlikely, decode again
    no_speech_threshold: float = 0.6  # with a low log prob: silence, keep as is

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise UsageError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.beam_size < 1:
            raise UsageError(f"beam size must be at least 1, got {self.beam_size}")


@dataclass(frozen=True, slots=True)
class FakeBehaviour:
    """What a FakeEngine does: for scheduling and failure tests, never for real output."""

    seconds_per_audio_s: float = 0.0  # wall time slept per second of chunk audio
    load_s: float = 0.0  # time a model load takes
    fail_marker_dir: str | None = None  # chunks whose tag has a file "<tag>.fail" here raise
    crash_marker_dir: str | None = None  # ... "<tag>.crash": the worker process dies (once)
    oom_marker_dir: str | None = None  # ... "<tag>.oom": raises OutOfMemoryError (once)


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """A picklable recipe for an engine; workers build their engine from it once."""

    model: str  # folder or hub name (models.resolve_model)
    device: str = "cpu"  # "cpu" or "cuda" (the worker sees its GPU as index 0)
    compute_type: str = "default"
    cpu_threads: int = 1
    fake: FakeBehaviour | None = None  # set: a FakeEngine instead of the real one


class Engine(Protocol):
    def transcribe(
        self, batch: Sequence[np.ndarray], options: DecodeOptions, tags: Sequence[str] = ()
    ) -> list[ChunkResult]: ...


def load_engine(spec: EngineSpec) -> Engine:
    """Build the engine ``spec`` describes (in the worker process, once)."""
    if spec.fake is not None:
        return FakeEngine(spec.fake)
    return FasterWhisperEngine(spec)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "out of memory" in text or "cuda_error_out_of_memory" in text or "bad_alloc" in text


class FasterWhisperEngine:
    """faster-whisper's CTranslate2 Whisper, batched over chunks."""

    def __init__(self, spec: EngineSpec) -> None:
        from faster_whisper import WhisperModel

        local = Path(spec.model).is_dir()
        try:
            self.model = WhisperModel(
                spec.model,
                device=spec.device,
                compute_type=spec.compute_type,
                cpu_threads=spec.cpu_threads,
                local_files_only=local,
            )
        except (OSError, ValueError, RuntimeError) as exc:
            if _is_oom(exc):
                raise OutOfMemoryError(f"loading {spec.model}: {exc}") from exc
            raise ModelNotFoundError(
                f"cannot load model {spec.model!r} on {spec.device} ({spec.compute_type}): {exc}"
            ) from exc
        self.multilingual = bool(self.model.model.is_multilingual)
        self._tokenizers: dict[tuple[str, str], Any] = {}

    # -- helpers -----------------------------------------------------------------------------

    def _tokenizer(self, language: str, task: str) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        key = (language, task)
        if key not in self._tokenizers:
            self._tokenizers[key] = Tokenizer(
                self.model.hf_tokenizer, self.multilingual, task=task, language=language
            )
        return self._tokenizers[key]

    def _fw_options(self, options: DecodeOptions, temperatures: Sequence[float]) -> Any:
        from faster_whisper.transcribe import TranscriptionOptions

        return TranscriptionOptions(
            beam_size=options.beam_size,
            best_of=5,
            patience=1.0,
            length_penalty=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            log_prob_threshold=options.log_prob_threshold,
            no_speech_threshold=options.no_speech_threshold,
            compression_ratio_threshold=options.compression_ratio_threshold,
            condition_on_previous_text=False,
            prompt_reset_on_temperature=0.5,
            temperatures=list(temperatures),
            initial_prompt=options.initial_prompt,
            prefix=None,
            suppress_blank=True,
            suppress_tokens=[-1],
            without_timestamps=True,
            max_initial_timestamp=0.0,
            word_timestamps=True,
            prepend_punctuations="\"'“¿([{-",
            append_punctuations="\"'.。,，!！?？:：”)]}、",
            multilingual=False,
            max_new_tokens=None,
            clip_timestamps="0",
            hallucination_silence_threshold=None,
            hotwords=None,
        )

    def _features(self, audio: np.ndarray) -> np.ndarray:
        from faster_whisper.audio import pad_or_trim

        return pad_or_trim(self.model.feature_extractor(audio)[..., :-1])

    def _encode(self, features: list[np.ndarray]) -> Any:
        return self.model.encode(np.stack(features))

    def _prompt(self, tokenizer: Any, options: DecodeOptions) -> list[int]:
        text = options.initial_prompt
        previous = tokenizer.encode(" " + text.strip()) if text else []
        return self.model.get_prompt(tokenizer, previous, without_timestamps=True)

    # -- the batch ---------------------------------------------------------------------------

    def transcribe(
        self, batch: Sequence[np.ndarray], options: DecodeOptions, tags: Sequence[str] = ()
    ) -> list[ChunkResult]:
        try:
            return self._transcribe(batch, options)
        except RuntimeError as exc:
            if _is_oom(exc):
                raise OutOfMemoryError(str(exc)) from exc
            raise

    def _transcribe(self, batch: Sequence[np.ndarray], options: DecodeOptions) -> list[ChunkResult]:
        if options.task == "translate" and not self.multilingual:
            raise UsageError("this model is English-only: it cannot translate")
        features = [self._features(audio) for audio in batch]
        encoder_output = self._encode(features)
        languages, probabilities = self._languages(encoder_output, len(batch), options)
        # Group by language: prompts, word splitting and alignment are per tokenizer.
        results: list[ChunkResult | None] = [None] * len(batch)
        groups: dict[str, list[int]] = {}
        for i, language in enumerate(languages):
            groups.setdefault(language, []).append(i)
        for language, indices in groups.items():
            enc = (
                encoder_output if len(groups) == 1 else self._encode([features[i] for i in indices])
            )
            segments = self._decode_group(
                [batch[i] for i in indices], [features[i] for i in indices], enc, language, options
            )
            for i, segs in zip(indices, segments, strict=True):
                results[i] = ChunkResult(tuple(segs), language, probabilities[i])
        return [r for r in results if r is not None]

    def _languages(
        self, encoder_output: Any, n: int, options: DecodeOptions
    ) -> tuple[list[str], list[float]]:
        if not self.multilingual:
            return ["en"] * n, [1.0] * n
        if options.language:
            return [options.language] * n, [1.0] * n
        detected = self.model.model.detect_language(encoder_output)
        languages = [pairs[0][0][2:-2] for pairs in detected]  # "<|en|>" -> "en"
        return languages, [float(pairs[0][1]) for pairs in detected]

    def _decode_group(
        self,
        audios: list[np.ndarray],
        features: list[np.ndarray],
        encoder_output: Any,
        language: str,
        options: DecodeOptions,
    ) -> list[list[Segment]]:
        tokenizer = self._tokenizer(language, options.task)
        fw_options = self._fw_options(options, options.temperatures)
        prompt = self._prompt(tokenizer, options)
        outputs = self._generate(encoder_output, prompt, tokenizer, fw_options, features)
        hop = self.model.feature_extractor.hop_length
        sizes = [min(audio.size // hop, 3000) for audio in audios]
        per_chunk = [
            [
                {
                    "start": 0.0,
                    "end": audio.size / SAMPLE_RATE,
                    "seek": 0,
                    "tokens": [t for t in output["tokens"] if t < tokenizer.eot],
                }
            ]
            for audio, output in zip(audios, outputs, strict=True)
        ]
        self.model.add_word_timestamps(
            per_chunk,
            tokenizer,
            encoder_output,
            sizes,
            fw_options.prepend_punctuations,
            fw_options.append_punctuations,
            0.0,
        )
        segments = []
        for dicts, output in zip(per_chunk, outputs, strict=True):
            words = [
                Word(float(w["start"]), float(w["end"]), w["word"], float(w["probability"]))
                for w in dicts[0].get("words") or ()
            ]
            segments.append(
                segments_from_words(
                    words,
                    output["avg_logprob"],
                    output["no_speech_prob"],
                    output["compression_ratio"],
                )
            )
        return segments

    def _generate(
        self,
        encoder_output: Any,
        prompt: list[int],
        tokenizer: Any,
        fw_options: Any,
        features: list[np.ndarray],
    ) -> list[dict[str, Any]]:
        results = self.model.model.generate(
            encoder_output,
            [list(prompt) for _ in features],
            beam_size=fw_options.beam_size,
            patience=fw_options.patience,
            length_penalty=fw_options.length_penalty,
            max_length=self.model.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=fw_options.suppress_blank,
            suppress_tokens=fw_options.suppress_tokens,
        )
        outputs: list[dict[str, Any]] = []
        for i, result in enumerate(results):
            tokens = result.sequences_ids[0]
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            ratio = compression_ratio(tokenizer.decode(tokens).strip())
            output = {
                "tokens": tokens,
                "avg_logprob": avg_logprob,
                "no_speech_prob": result.no_speech_prob,
                "compression_ratio": ratio,
            }
            if self._needs_fallback(output, fw_options) and len(fw_options.temperatures) > 1:
                output = self._fallback(features[i], prompt, tokenizer, fw_options, output)
            outputs.append(output)
        return outputs

    @staticmethod
    def _needs_fallback(output: dict[str, Any], fw_options: Any) -> bool:
        too_repetitive = output["compression_ratio"] > fw_options.compression_ratio_threshold
        too_unlikely = output["avg_logprob"] < fw_options.log_prob_threshold
        silence = output["no_speech_prob"] > fw_options.no_speech_threshold and too_unlikely
        return (too_repetitive or too_unlikely) and not silence

    def _fallback(
        self,
        features: np.ndarray,
        prompt: list[int],
        tokenizer: Any,
        fw_options: Any,
        first: dict[str, Any],
    ) -> dict[str, Any]:
        """Decode one chunk again with faster-whisper's temperature ladder (rare)."""
        enc = self._encode([features])
        ladder = replace(fw_options, temperatures=list(fw_options.temperatures[1:]))
        result, avg_logprob, _temperature, ratio = self.model.generate_with_fallback(
            enc, prompt, tokenizer, ladder
        )
        second = {
            "tokens": result.sequences_ids[0],
            "avg_logprob": avg_logprob,
            "no_speech_prob": result.no_speech_prob,
            "compression_ratio": ratio,
        }
        if self._needs_fallback(second, fw_options) and first["avg_logprob"] > avg_logprob:
            return first
        return second


class FakeEngine:
    """Sleeps in proportion to chunk length and returns one placeholder segment per chunk.

    Used where a test is about scheduling or failure (and by ``bench --simulate``); it says so
    in its output text so nobody mistakes it for a transcript.
    """

    def __init__(self, behaviour: FakeBehaviour) -> None:
        self.behaviour = behaviour
        if behaviour.load_s:
            time.sleep(behaviour.load_s)

    def _marker(self, directory: str | None, tag: str, kind: str) -> Path | None:
        if directory is None:
            return None
        path = Path(directory) / f"{tag}.{kind}"
        return path if path.exists() else None

    def transcribe(
        self, batch: Sequence[np.ndarray], options: DecodeOptions, tags: Sequence[str] = ()
    ) -> list[ChunkResult]:
        b = self.behaviour
        tags = list(tags) or [""] * len(batch)
        for tag in tags:
            if (marker := self._marker(b.crash_marker_dir, tag, "crash")) is not None:
                marker.unlink(missing_ok=True)
                os._exit(17)  # a hard crash, as a segfault or the OOM killer would do
            if (marker := self._marker(b.oom_marker_dir, tag, "oom")) is not None:
                marker.unlink(missing_ok=True)
                raise OutOfMemoryError(f"fake out of memory on chunk {tag}")
            if self._marker(b.fail_marker_dir, tag, "fail") is not None:
                raise RuntimeError(f"fake failure on chunk {tag}")
        total_s = sum(a.size for a in batch) / SAMPLE_RATE
        if b.seconds_per_audio_s:
            time.sleep(total_s * b.seconds_per_audio_s)
        results = []
        for audio, tag in zip(batch, tags, strict=True):
            duration = audio.size / SAMPLE_RATE
            text = f" fake transcript of {tag or 'chunk'}"
            words = tuple(
                Word(duration * i / 4, duration * (i + 1) / 4, f" {w}", 1.0)
                for i, w in enumerate(text.split())
            )
            results.append(
                ChunkResult((Segment(0.0, duration, text, words),), options.language or "en")
            )
        return results
