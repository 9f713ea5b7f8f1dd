"""Kaltura language names and 3-letter codes → the codes KWIKmotion takes (issue 3).

KWIKmotion's StartRecognition takes "Source language ISO 639-1 code" and target codes from the
seed's "Supported Languages" table (which uses ``kmr``/``ckb`` for the two Kurdish varieties, as
the engine does). Kaltura names a catalog item's language with ``KalturaCatalogItemLanguage``
values ("English", "French (Canada)", ...) and a live feature's with a 3-letter code ("eng").

Only explicit entries map: a name or code that is not in these tables is refused
(``UnsupportedLanguage``), never guessed — e.g. "Traditional Chinese", "Cantonese", "English (ASL)",
"Auto Detect" or the Kurdish macrolanguage "kur" (which variety?) are refused.

``language_code`` is what the caption responses carry (seed: "en-US", "es-ES", "pt-BR"): with a
region when the order names one, else the 2-letter code.
"""

from __future__ import annotations

from dataclasses import dataclass

# The seed's table, verbatim: name → code (kwikmotion-live-captions-api.txt, "Supported Languages").
KWIKMOTION_LANGUAGES: dict[str, str] = {
    "Afrikaans": "af",
    "Arabic": "ar",
    "Armenian": "hy",
    "Azerbaijani": "az",
    "Belarusian": "be",
    "Bosnian": "bs",
    "Bulgarian": "bg",
    "Catalan": "ca",
    "Chinese (Simplified)": "zh",
    "Croatian": "hr",
    "Czech": "cs",
    "Danish": "da",
    "Dutch": "nl",
    "English": "en",
    "Estonian": "et",
    "Finnish": "fi",
    "French": "fr",
    "Galician": "gl",
    "German": "de",
    "Greek": "el",
    "Hebrew": "he",
    "Hindi": "hi",
    "Hungarian": "hu",
    "Icelandic": "is",
    "Indonesian": "id",
    "Italian": "it",
    "Japanese": "ja",
    "Kannada": "kn",
    "Kazakh": "kk",
    "Korean": "ko",
    "Kurdish (Kurmanji)": "kmr",
    "Kurdish (Sorani)": "ckb",
    "Latvian": "lv",
    "Lithuanian": "lt",
    "Macedonian": "mk",
    "Malay": "ms",
    "Maori": "mi",
    "Marathi": "mr",
    "Nepali": "ne",
    "Norwegian": "no",
    "Persian (Farsi)": "fa",
    "Polish": "pl",
    "Portuguese": "pt",
    "Romanian": "ro",
    "Russian": "ru",
    "Serbian": "sr",
    "Slovak": "sk",
    "Slovenian": "sl",
    "Spanish": "es",
    "Swahili": "sw",
    "Swedish": "sv",
    "Tagalog": "tl",
    "Tamil": "ta",
    "Thai": "th",
    "Turkish": "tr",
    "Ukrainian": "uk",
    "Urdu": "ur",
    "Vietnamese": "vi",
    "Welsh": "cy",
}
SUPPORTED_CODES = frozenset(KWIKMOTION_LANGUAGES.values())

# KalturaCatalogItemLanguage values (KalturaApiClient 23.10, Plugins/Reach.py) that name a
# language KWIKmotion serves, with the response language_code. Plain names map to the 2-letter
# code; names with a region keep it.
_KALTURA_NAMES: dict[str, tuple[str, str]] = {
    "Afrikaans": ("af", "af"),
    "Arabic": ("ar", "ar"),
    "Arabic (Lebanon)": ("ar", "ar-LB"),
    "Arabic (Qatar)": ("ar", "ar-QA"),
    "Arabic (Saudi Arabia)": ("ar", "ar-SA"),
    "Azerbaijani": ("az", "az"),
    "Bosnian": ("bs", "bs"),
    "Bulgarian": ("bg", "bg"),
    "Byelorussian (Belarusian)": ("be", "be"),
    "Catalan": ("ca", "ca"),
    # KWIKmotion's Chinese is Simplified (Mandarin). Traditional, Taiwanese and Cantonese are
    # different outputs/speech and stay unmapped.
    "Chinese": ("zh", "zh"),
    "Simplified Chinese": ("zh", "zh"),
    "Mandarin Chinese": ("zh", "zh"),
    "Croatian": ("hr", "hr"),
    "Czech": ("cs", "cs"),
    "Danish": ("da", "da"),
    "Dutch": ("nl", "nl"),
    "English": ("en", "en"),
    "English (American)": ("en", "en-US"),
    "English (Australian)": ("en", "en-AU"),
    "English (British)": ("en", "en-GB"),
    "Estonian": ("et", "et"),
    "Farsi": ("fa", "fa"),
    "Persian (Iran)": ("fa", "fa-IR"),
    "Finnish": ("fi", "fi"),
    "French": ("fr", "fr"),
    "French (Canada)": ("fr", "fr-CA"),
    "Galician": ("gl", "gl"),
    "German": ("de", "de"),
    "Greek": ("el", "el"),
    "Hebrew": ("he", "he"),
    "Hindi": ("hi", "hi"),
    "Hungarian": ("hu", "hu"),
    "Icelandic": ("is", "is"),
    "Indonesian": ("id", "id"),
    "Italian": ("it", "it"),
    "Japanese": ("ja", "ja"),
    "Kannada": ("kn", "kn"),
    "Kazakh": ("kk", "kk"),
    "Korean": ("ko", "ko"),
    "Latvian (Lettish)": ("lv", "lv"),
    "Lithuanian": ("lt", "lt"),
    "Macedonian": ("mk", "mk"),
    "Malay": ("ms", "ms"),
    "Marathi": ("mr", "mr"),
    "Nepali": ("ne", "ne"),
    "Norwegian": ("no", "no"),
    "Polish": ("pl", "pl"),
    "Portuguese": ("pt", "pt"),
    "Portuguese (Brazil)": ("pt", "pt-BR"),
    "Romanian": ("ro", "ro"),
    "Russian": ("ru", "ru"),
    "Serbian": ("sr", "sr"),
    "Slovak": ("sk", "sk"),
    "Slovakian": ("sk", "sk"),
    "Slovenian": ("sl", "sl"),
    "Spanish": ("es", "es"),
    "Spanish (Latin America)": ("es", "es-419"),
    "Swahili (Kiswahili)": ("sw", "sw"),
    "Swedish": ("sv", "sv"),
    "Tagalog": ("tl", "tl"),
    "Tamil": ("ta", "ta"),
    "Thai": ("th", "th"),
    "Turkish": ("tr", "tr"),
    "Ukrainian": ("uk", "uk"),
    "Urdu": ("ur", "ur"),
    "Vietnamese": ("vi", "vi"),
    "Welsh": ("cy", "cy"),
}

# ISO 639-2 (bibliographic and terminologic) codes of the seed's languages, as a live feature's
# ``language`` carries them ("eng"); Kurdish uses the ISO 639-3 codes of the two varieties.
_THREE_LETTER: dict[str, str] = {
    "afr": "af",
    "ara": "ar",
    "arm": "hy",
    "hye": "hy",
    "aze": "az",
    "bel": "be",
    "bos": "bs",
    "bul": "bg",
    "cat": "ca",
    "chi": "zh",
    "zho": "zh",
    "hrv": "hr",
    "cze": "cs",
    "ces": "cs",
    "dan": "da",
    "dut": "nl",
    "nld": "nl",
    "eng": "en",
    "est": "et",
    "fin": "fi",
    "fre": "fr",
    "fra": "fr",
    "glg": "gl",
    "ger": "de",
    "deu": "de",
    "gre": "el",
    "ell": "el",
    "heb": "he",
    "hin": "hi",
    "hun": "hu",
    "ice": "is",
    "isl": "is",
    "ind": "id",
    "ita": "it",
    "jpn": "ja",
    "kan": "kn",
    "kaz": "kk",
    "kor": "ko",
    "kmr": "kmr",
    "ckb": "ckb",
    "lav": "lv",
    "lit": "lt",
    "mac": "mk",
    "mkd": "mk",
    "may": "ms",
    "msa": "ms",
    "mao": "mi",
    "mri": "mi",
    "mar": "mr",
    "nep": "ne",
    "nor": "no",
    "per": "fa",
    "fas": "fa",
    "pol": "pl",
    "por": "pt",
    "rum": "ro",
    "ron": "ro",
    "rus": "ru",
    "srp": "sr",
    "slo": "sk",
    "slk": "sk",
    "slv": "sl",
    "spa": "es",
    "swa": "sw",
    "swe": "sv",
    "tgl": "tl",
    "tam": "ta",
    "tha": "th",
    "tur": "tr",
    "ukr": "uk",
    "urd": "ur",
    "vie": "vi",
    "wel": "cy",
    "cym": "cy",
}


class UnsupportedLanguage(ValueError):
    """A language reachlive cannot serve: the message is readable as a task's errDescription."""

    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(
            f"Unsupported language: {value!r} is not offered by reachlive's speech engine (KWIKmotion AI Live Captions)"
        )


@dataclass(frozen=True, slots=True)
class Language:
    iso: str  # the code KWIKmotion takes (ISO 639-1; kmr/ckb for Kurdish)
    code: str  # the caption responses' language_code ("fr-CA" when the order names a region)


def _build() -> dict[str, Language]:
    table: dict[str, Language] = {}
    for name, (iso, code) in _KALTURA_NAMES.items():
        table[name.casefold()] = Language(iso, code)
    # The seed's own names too ("Persian (Farsi)", "Kurdish (Sorani)", "Maori", ...).
    for name, iso in KWIKMOTION_LANGUAGES.items():
        table.setdefault(name.casefold(), Language(iso, iso))
    for three, iso in _THREE_LETTER.items():
        table.setdefault(three, Language(iso, iso))
    # A bare ISO 639-1 code of a served language maps to itself.
    for iso in SUPPORTED_CODES:
        table.setdefault(iso, Language(iso, iso))
    assert all(lang.iso in SUPPORTED_CODES for lang in table.values())
    return table


_TABLE = _build()


def resolve(value: str | None) -> Language:
    """Map a Kaltura language name or code to KWIKmotion's code, or raise UnsupportedLanguage."""
    key = (value or "").strip().casefold()
    lang = _TABLE.get(key)
    if lang is None:
        raise UnsupportedLanguage(value or "")
    return lang


def supported(value: str | None) -> bool:
    return (value or "").strip().casefold() in _TABLE
