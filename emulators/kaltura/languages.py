"""Kaltura catalog-item language names (``KalturaCatalogItemLanguage``) → the 3-letter code that
Kaltura puts in a KalturaLiveCaptionFeature's ``language`` (the seed shows ``"eng"`` for English).

ISO 639-3 codes; regional variants share their language's code. An admin may pass an explicit
``language`` per task to test anything else.
"""

from __future__ import annotations

LANGUAGE_CODES: dict[str, str] = {
    "Afrikaans": "afr", "Arabic": "ara", "Arabic (Lebanon)": "ara", "Arabic (Qatar)": "ara",
    "Arabic (Saudi Arabia)": "ara", "Azerbaijani": "aze", "Bashkir": "bak", "Basque": "eus",
    "Bengali (Bangla)": "ben", "Bosnian": "bos", "Bulgarian": "bul", "Burmese": "mya",
    "Byelorussian (Belarusian)": "bel", "Cambodian": "khm", "Cantonese": "yue", "Catalan": "cat",
    "Chinese": "zho", "Croatian": "hrv", "Czech": "ces", "Danish": "dan", "Dutch": "nld",
    "English": "eng", "English (ASL)": "eng", "English (American)": "eng", "English (Australian)": "eng",
    "English (BSL)": "eng", "English (British)": "eng", "Esperanto": "epo", "Estonian": "est",
    "Farsi": "fas", "Finnish": "fin", "French": "fra", "French (Canada)": "fra",
    "Gaelic (Scottish)": "gla", "Galician": "glg", "Georgian": "kat", "German": "deu", "Greek": "ell",
    "Gujarati": "guj", "Hebrew": "heb", "Hindi": "hin", "Hungarian": "hun", "Icelandic": "isl",
    "Indonesian": "ind", "Interlingua": "ina", "Irish": "gle", "Italian": "ita", "Japanese": "jpn",
    "Javanese": "jav", "Kannada": "kan", "Kazakh": "kaz", "Korean": "kor", "Laothian": "lao",
    "Latvian (Lettish)": "lav", "Lithuanian": "lit", "Macedonian": "mkd", "Malay": "msa",
    "Malayalam": "mal", "Mandarin Chinese": "cmn", "Marathi": "mar", "Mongolian": "mon", "Nepali": "nep",
    "Norwegian": "nor", "Persian (Iran)": "fas", "Polish": "pol", "Portuguese": "por",
    "Portuguese (Brazil)": "por", "Punjabi": "pan", "Romanian": "ron", "Russian": "rus", "Serbian": "srp",
    "Simplified Chinese": "zho", "Sinhalese": "sin", "Slovak": "slk", "Slovakian": "slk",
    "Slovenian": "slv", "Spanish": "spa", "Spanish (Latin America)": "spa", "Sundanese": "sun",
    "Swahili (Kiswahili)": "swa", "Swedish": "swe", "Tagalog": "tgl", "Taiwanese Mandarin": "cmn",
    "Tamil": "tam", "Telugu": "tel", "Thai": "tha", "Traditional Chinese": "zho", "Turkish": "tur",
    "Uighur": "uig", "Ukrainian": "ukr", "Urdu": "urd", "Uzbek": "uzb", "Vietnamese": "vie",
    "Welsh": "cym", "Xhosa": "xho", "Zulu": "zul",
}  # fmt: skip


def language_code(name: str) -> str:
    """The 3-letter code of a Kaltura language name (unknown names: first three letters, lowercased)."""
    return LANGUAGE_CODES.get(name, name[:3].lower())
