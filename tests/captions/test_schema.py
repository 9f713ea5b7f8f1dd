"""Every response matches the Kaltura seed's "Websocket response - schema", field by field."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from pydantic import ValidationError

from emulators.caption_schema import validate_response
from shared.captions import Envelope
from tests.captions.conftest import JFK, TB, alt, builder, doc, transcript, translation

# Kaltura seed, "Websocket response - schema", verbatim.
SEED_SCHEMA = """
{
  "response": {
    "id": string (UUID),
    "type": "transcript" | "captions",
    "service_type": "transcription" | "translation",      "language_code": string,
    "start": float,
    "end": float,
    "start_pts": float,
    "start_epoch": float,
    "is_final": boolean,
    "is_end_of_stream": boolean,
    "speakers": [
      {
        "id": string (UUID),
        "label": string | null
      }
    ],
    "alternatives": [
      {
        "transcript": string,
        "start": float,
        "end": float,
        "start_pts": float,
        "start_epoch": float,
        "items": [
          {
            "start": float,
            "end": float,
            "kind": "text" | "punct",
            "value": string,
            "speaker_id": string (UUID)
          }
        ]
      }
    ]
  }
}
"""


_DECL = re.compile(r'"(\w+)":\s*((?:"\w+"(?:\s*\|\s*"\w+")*)|string \(UUID\)|string \| null|string|float|boolean)')


def _seed_fields() -> dict[str, list[tuple[str, str]]]:
    """Field names and declared types per object of the seed schema, in the seed's order: the
    seed text becomes JSON by quoting each type declaration."""
    tree = json.loads(_DECL.sub(lambda m: f'"{m.group(1)}": {json.dumps(m.group(2))}', SEED_SCHEMA))
    response = tree["response"]
    alternative = response["alternatives"][0]
    return {
        "response": list(response.items()),
        "speakers": list(response["speakers"][0].items()),
        "alternatives": list(alternative.items()),
        "items": list(alternative["items"][0].items()),
    }


SEED = _seed_fields()
PY = {"float": float, "boolean": bool}


def _check(obj: dict, spec: list[tuple[str, str]]) -> None:
    assert list(obj) == [name for name, _ in spec]  # every field, nothing else, in the seed's order
    for name, decl in spec:
        value = obj[name]
        if isinstance(decl, list):
            assert isinstance(value, list)  # an array of objects, checked by the caller
        elif decl in PY:
            assert type(value) is PY[decl], (name, value)
        elif decl.startswith("string (UUID)"):
            assert str(uuid.UUID(value)) == value
        elif decl == "string":
            assert isinstance(value, str)
        elif decl == "string | null":
            assert value is None or isinstance(value, str)
        else:
            assert "|" in decl and value in re.findall(r'"(\w+)"', decl), (name, value)


def test_seed_schema_parsed() -> None:
    assert [n for n, _ in SEED["response"]] == [
        "id",
        "type",
        "service_type",
        "language_code",
        "start",
        "end",
        "start_pts",
        "start_epoch",
        "is_final",
        "is_end_of_stream",
        "speakers",
        "alternatives",
    ]
    assert [n for n, _ in SEED["items"]] == ["start", "end", "kind", "value", "speaker_id"]
    assert "start_epoque" not in json.dumps(SEED)


def _all_responses() -> list:
    out = []
    for types in ("transcript,captions",):
        b = builder(types=types, profanity=True)
        out += b.build(transcript(JFK, 0.0, 11.0), 0.0, TB)
        out += b.build(transcript("", 11.0, 17.0, 1), 0.0, TB)
        out += b.end_of_stream(18.0, TB)
        t = builder(service_type="translation", language_code="fr-FR")
        out += t.build(translation("Et donc, mes chers compatriotes, ne demandez pas.", 0.0, 11.0), 0.0, TB)
        out += t.end_of_stream(18.0, TB)
    return out


@pytest.mark.parametrize("i", range(len(_all_responses())))
def test_every_field_of_the_seed_schema(i: int) -> None:
    b = _all_responses()[i]
    root = json.loads(b.json)
    assert list(root) == ["response"]
    r = root["response"]
    _check(r, SEED["response"])
    assert r["speakers"] and r["alternatives"]
    for sp in r["speakers"]:
        _check(sp, SEED["speakers"])
    for a in r["alternatives"]:
        _check(a, SEED["alternatives"])
        for item in a["items"]:
            _check(item, SEED["items"])
    # our strict models and the emulated Kaltura client's independent checker agree
    Envelope.model_validate_json(b.json)
    assert validate_response(root) == []


def test_field_semantics_of_a_transcript_response() -> None:
    b = builder()
    [tr, *caps] = b.build(transcript(JFK, 2.0, 13.0), 5.0, TB)
    r = doc(tr)
    assert r["type"] == "transcript" and r["service_type"] == "transcription" and r["language_code"] == "en-US"
    assert (r["start"], r["end"]) == (7.0, 18.0)  # media time = offset + KWIKmotion time
    assert r["start_pts"] == 107.0  # carried from the audio (anchor pts 100 at media 0)
    assert r["start_epoch"] == 1_729_166_407.0
    assert r["is_final"] is True and r["is_end_of_stream"] is False
    assert r["speakers"] == [{"id": b.speaker, "label": None}]
    a = alt(tr)
    assert len(r["alternatives"]) == 1 and a["transcript"] == JFK
    assert (a["start"], a["end"], a["start_pts"], a["start_epoch"]) == (7.0, 18.0, 107.0, 1_729_166_407.0)
    assert {i["speaker_id"] for i in a["items"]} == {b.speaker}
    assert caps and all(doc(c)["type"] == "captions" and doc(c)["is_final"] for c in caps)


def test_models_reject_what_the_schema_forbids() -> None:
    good = json.loads(builder().build(transcript(JFK, 0.0, 11.0), 0.0, TB)[0].json)
    bad_cases = []
    for path, value in [
        (("start_epoque",), 1.0),  # the example's misspelling is not the schema
        (("type",), "partial"),
        (("service_type",), "asr"),
        (("id",), "not-a-uuid"),
        (("is_final",), "yes"),
        (("alternatives", 0, "items", 0, "kind"), "word"),
    ]:
        d = json.loads(json.dumps(good))
        target = d["response"]
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value
        bad_cases.append(d)
    missing = json.loads(json.dumps(good))
    del missing["response"]["start_pts"]
    bad_cases.append(missing)
    for d in bad_cases:
        with pytest.raises(ValidationError):
            Envelope.model_validate(d)


def test_the_field_check_itself_catches_departures() -> None:
    r = json.loads(builder().build(transcript(JFK, 0.0, 11.0), 0.0, TB)[0].json)["response"]
    for name, bad in [("type", "partial"), ("start", "0.0"), ("is_final", 1), ("id", "x")]:
        with pytest.raises((AssertionError, ValueError)):
            _check({**r, name: bad}, SEED["response"])
    with pytest.raises(AssertionError):
        _check({**r, "start_epoque": 1.0}, SEED["response"])
