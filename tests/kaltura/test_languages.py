"""Language mapping: every language of the KWIKmotion seed, Kaltura's names and codes, refusals."""

from __future__ import annotations

import pytest

from shared.kaltura.languages import KWIKMOTION_LANGUAGES, UnsupportedLanguage, resolve, supported

# The seed's "Supported Languages" table (kwikmotion-live-captions-api.txt), copied row by row so
# that this test fails if the mapping drifts from the seed: name, ISO code, a 3-letter code.
SEED = [
    ("Afrikaans", "af", "afr"),
    ("Arabic", "ar", "ara"),
    ("Armenian", "hy", "hye"),
    ("Azerbaijani", "az", "aze"),
    ("Belarusian", "be", "bel"),
    ("Bosnian", "bs", "bos"),
    ("Bulgarian", "bg", "bul"),
    ("Catalan", "ca", "cat"),
    ("Chinese (Simplified)", "zh", "zho"),
    ("Croatian", "hr", "hrv"),
    ("Czech", "cs", "ces"),
    ("Danish", "da", "dan"),
    ("Dutch", "nl", "nld"),
    ("English", "en", "eng"),
    ("Estonian", "et", "est"),
    ("Finnish", "fi", "fin"),
    ("French", "fr", "fra"),
    ("Galician", "gl", "glg"),
    ("German", "de", "deu"),
    ("Greek", "el", "ell"),
    ("Hebrew", "he", "heb"),
    ("Hindi", "hi", "hin"),
    ("Hungarian", "hu", "hun"),
    ("Icelandic", "is", "isl"),
    ("Indonesian", "id", "ind"),
    ("Italian", "it", "ita"),
    ("Japanese", "ja", "jpn"),
    ("Kannada", "kn", "kan"),
    ("Kazakh", "kk", "kaz"),
    ("Korean", "ko", "kor"),
    ("Kurdish (Kurmanji)", "kmr", "kmr"),
    ("Kurdish (Sorani)", "ckb", "ckb"),
    ("Latvian", "lv", "lav"),
    ("Lithuanian", "lt", "lit"),
    ("Macedonian", "mk", "mkd"),
    ("Malay", "ms", "msa"),
    ("Maori", "mi", "mri"),
    ("Marathi", "mr", "mar"),
    ("Nepali", "ne", "nep"),
    ("Norwegian", "no", "nor"),
    ("Persian (Farsi)", "fa", "fas"),
    ("Polish", "pl", "pol"),
    ("Portuguese", "pt", "por"),
    ("Romanian", "ro", "ron"),
    ("Russian", "ru", "rus"),
    ("Serbian", "sr", "srp"),
    ("Slovak", "sk", "slk"),
    ("Slovenian", "sl", "slv"),
    ("Spanish", "es", "spa"),
    ("Swahili", "sw", "swa"),
    ("Swedish", "sv", "swe"),
    ("Tagalog", "tl", "tgl"),
    ("Tamil", "ta", "tam"),
    ("Thai", "th", "tha"),
    ("Turkish", "tr", "tur"),
    ("Ukrainian", "uk", "ukr"),
    ("Urdu", "ur", "urd"),
    ("Vietnamese", "vi", "vie"),
    ("Welsh", "cy", "cym"),
]


def test_table_is_the_seed() -> None:
    assert {name: code for name, code, _ in SEED} == KWIKMOTION_LANGUAGES
    assert len(SEED) == 59


@pytest.mark.parametrize(("name", "code", "three"), SEED)
def test_every_seed_language_maps(name: str, code: str, three: str) -> None:
    assert resolve(name).iso == code
    assert resolve(name.upper()).iso == code
    assert resolve(three).iso == code
    assert resolve(code).iso == code
    assert resolve(name).code == code  # no region named → the bare code


@pytest.mark.parametrize(
    ("kaltura", "iso", "code"),
    [
        ("English", "en", "en"),
        ("English (American)", "en", "en-US"),
        ("English (British)", "en", "en-GB"),
        ("French (Canada)", "fr", "fr-CA"),
        ("Portuguese (Brazil)", "pt", "pt-BR"),
        ("Spanish (Latin America)", "es", "es-419"),
        ("Arabic (Saudi Arabia)", "ar", "ar-SA"),
        ("Farsi", "fa", "fa"),
        ("Persian (Iran)", "fa", "fa-IR"),
        ("Byelorussian (Belarusian)", "be", "be"),
        ("Latvian (Lettish)", "lv", "lv"),
        ("Swahili (Kiswahili)", "sw", "sw"),
        ("Slovakian", "sk", "sk"),
        ("Simplified Chinese", "zh", "zh"),
        ("eng", "en", "en"),
        ("fre", "fr", "fr"),
        ("ger", "de", "de"),
        ("  French  ", "fr", "fr"),
    ],
)
def test_kaltura_names_and_codes(kaltura: str, iso: str, code: str) -> None:
    lang = resolve(kaltura)
    assert (lang.iso, lang.code) == (iso, code)


@pytest.mark.parametrize(
    "value",
    [
        "Traditional Chinese",
        "Cantonese",
        "Taiwanese Mandarin",
        "English (ASL)",
        "English (BSL)",
        "Auto Detect",
        "Klingon",
        "kur",
        "xyz",
        "",
        None,
        "Gujarati",
        "Zulu",
        "Esperanto",
    ],
)
def test_unmapped_is_refused_never_guessed(value: str | None) -> None:
    assert not supported(value)
    with pytest.raises(UnsupportedLanguage) as info:
        resolve(value)
    assert "Unsupported language" in str(info.value)
