"""The languages KWIKmotion supports (seed: "Supported Languages", ISO 639-1 codes plus the two
Kurdish codes the table lists), for transcription and translation alike ("All languages support
both transcription and translation to/from any other supported language")."""

from __future__ import annotations

# In the seed table's order (by English name).
SUPPORTED_LANGUAGES: tuple[str, ...] = (
    "af", "ar", "hy", "az", "be", "bs", "bg", "ca", "zh", "hr", "cs", "da", "nl", "en", "et", "fi",
    "fr", "gl", "de", "el", "he", "hi", "hu", "is", "id", "it", "ja", "kn", "kk", "ko", "kmr", "ckb",
    "lv", "lt", "mk", "ms", "mi", "mr", "ne", "no", "fa", "pl", "pt", "ro", "ru", "sr", "sk", "sl",
    "es", "sw", "sv", "tl", "ta", "th", "tr", "uk", "ur", "vi", "cy",
)  # fmt: skip

_SUPPORTED = frozenset(SUPPORTED_LANGUAGES)


def is_supported_language(code: str) -> bool:
    """True if KWIKmotion lists ``code`` (exact, lowercase: the seed asks for "lowercase" codes)."""
    return code in _SUPPORTED
