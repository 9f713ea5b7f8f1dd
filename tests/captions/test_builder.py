"""CaptionBuilder: transcript and captions responses, translations, silence, ids, state, EOS."""

from __future__ import annotations

import itertools
import json
import uuid

import pytest

from shared.captions import (
    NAMESPACE,
    AnchoredTimeBase,
    CaptionBuilder,
    ChunkTimeBase,
    censor_text,
    mask,
    response_id,
    speaker_id,
    to_entry,
)
from shared.streams import AudioChunk, CaptionEntry
from tests.captions.conftest import JFK, TB, alt, builder, doc, transcript, translation


def captions_of(built: list) -> list:
    return [b for b in built if b.type == "captions"]


def test_one_final_transcript_response_per_result_with_words_and_punct() -> None:
    b = builder(types="transcript")
    out = b.build(transcript("This is the transcribed text", 0.0, 4.0), 0.0, TB)  # the seed's example
    assert [x.type for x in out] == ["transcript"]
    items = alt(out[0])["items"]
    assert [(i["kind"], i["value"]) for i in items] == [("text", w) for w in "This is the transcribed text".split()]
    out = b.build(transcript(JFK, 4.0, 15.0), 0.0, TB)
    items = alt(out[0])["items"]
    assert [i["value"] for i in items if i["kind"] == "punct"] == [",", ",", "."]
    assert " ".join(i["value"] for i in items if i["kind"] == "text") == JFK.replace(",", "").replace(".", "")


def test_transcript_item_timings_by_length_monotonic_inside() -> None:
    [tr] = builder(types="transcript").build(transcript("a bb ccc.", 10.0, 18.0), 2.0, TB)
    items = alt(tr)["items"]
    # 1 + 1 + 2 + 1 + 3 = 8 characters over 8 seconds, from media time 12
    assert [(i["value"], i["start"], i["end"]) for i in items] == [
        ("a", 12.0, 13.0),
        ("bb", 14.0, 16.0),
        ("ccc", 17.0, 20.0),
        (".", 20.0, 20.0),
    ]


def test_captions_for_the_jfk_sample() -> None:
    b = builder()
    out = b.build(transcript(JFK, 0.0, 11.0), 0.0, TB)
    caps = captions_of(out)
    texts = [alt(c)["transcript"] for c in caps]
    assert texts == [
        "And so my fellow\nAmericans,",
        "ask not what your\ncountry can do for you,",
        "ask what you can do\nfor your country.",
    ]
    # blocks break at the commas (phrase boundaries), lines within the seed's 26 characters
    assert all(len(line) <= 26 for t in texts for line in t.split("\n"))
    spans = [(doc(c)["start"], doc(c)["end"]) for c in caps]
    assert spans[0][0] == 0.0 and spans[-1][1] == 11.0
    assert all(a[1] <= b_[0] for a, b_ in itertools.pairwise(spans))
    assert all(1.0 <= e - s <= 7.0 for s, e in spans)
    # start_pts / start_epoch follow each block's own start
    for c in caps:
        r = doc(c)
        assert r["start_pts"] == round(100.0 + r["start"], 3)
        assert r["start_epoch"] == round(1_729_166_400.0 + r["start"], 3)


def test_silence_gives_an_empty_transcript_and_no_captions() -> None:
    b = builder()
    for text in ("", "   "):
        out = b.build(transcript(text, len(text) * 6.0, len(text) * 6.0 + 6.0), 0.0, TB)
        assert [x.type for x in out] == ["transcript"]
        r = doc(out[0])
        assert alt(out[0])["items"] == [] and alt(out[0])["transcript"] == ""
        assert r["end"] - r["start"] == 6.0  # the silent span is still covered
    # punctuation alone is no words: no caption either
    out = b.build(transcript("...", 30.0, 32.0), 0.0, TB)
    assert [x.type for x in out] == ["transcript"]
    assert alt(out[0])["items"] == [
        {"start": 30.0, "end": 30.0, "kind": "punct", "value": "...", "speaker_id": b.speaker}
    ]


def test_translation_diverging_word_count_inside_source_bounds() -> None:
    b = builder(service_type="translation", language_code="fr-FR")
    # the seed's pair: 5 source words, 4 translated
    out = b.build(translation("C'est le texte traduit", 0.0, 4.0), 6.0, TB)
    tr, cap = out
    for x in out:
        r = doc(x)
        assert r["service_type"] == "translation" and r["language_code"] == "fr-FR"
        assert (r["start"], r["end"]) == ((6.0, 10.0) if x.type == "transcript" else (r["start"], r["end"]))
        for i in alt(x)["items"]:
            assert 6.0 <= i["start"] <= i["end"] <= 10.0
    assert [i["value"] for i in alt(tr)["items"]] == ["C'est", "le", "texte", "traduit"]
    assert alt(cap)["transcript"] == "C'est le texte traduit"
    longer = b.build(translation("Et donc, mes chers compatriotes américains, ne demandez pas", 4.0, 8.0), 6.0, TB)
    words = [i for i in alt(longer[0])["items"] if i["kind"] == "text"]
    assert len(words) == 9 and words[0]["start"] == 10.0 and words[-1]["end"] == 14.0


def test_accepts_routes_by_service_and_language() -> None:
    fr_ca = builder(service_type="translation", language_code="fr-CA")
    assert fr_ca.accepts(translation("Bonjour", 0.0, 1.0, target="fr"))
    assert fr_ca.accepts(translation("Bonjour", 0.0, 1.0, target="FR"))
    assert not fr_ca.accepts(translation("Hola", 0.0, 1.0, target="es"))
    assert not fr_ca.accepts(transcript("Hello", 0.0, 1.0))
    assert builder().accepts(transcript("Hello", 0.0, 1.0))
    assert not builder().accepts(translation("Bonjour", 0.0, 1.0))
    with pytest.raises(ValueError, match="not for this"):
        fr_ca.build(translation("Hola", 0.0, 1.0, target="es"), 0.0, TB)


def test_response_types_selection() -> None:
    r = transcript(JFK, 0.0, 11.0)
    assert {x.type for x in builder(types="captions").build(r, 0.0, TB)} == {"captions"}
    assert {x.type for x in builder(types=["transcript"]).build(r, 0.0, TB)} == {"transcript"}
    assert {x.type for x in builder(types="transcript, captions").build(r, 0.0, TB)} == {"transcript", "captions"}
    assert [x.type for x in builder(types="captions").end_of_stream(12.0, TB)] == ["captions"]


@pytest.mark.parametrize(
    "kw",
    [{"service_type": "asr"}, {"max_chars": 0}, {"types": "words"}, {"types": ""}, {"language_code": ""}],
)
def test_bad_configuration_refused(kw: dict) -> None:
    with pytest.raises(ValueError):
        builder(**kw)


def test_ids_are_uuid5_of_task_and_position() -> None:
    b = builder()
    out = b.build(transcript(JFK, 1.5, 12.5), 0.25, TB)
    assert out[0].id == str(uuid.uuid5(NAMESPACE, "task:471386462:transcript:1750-12750:0"))
    assert [x.id for x in out[1:]] == [
        str(uuid.uuid5(NAMESPACE, f"task:471386462:captions:1750-12750:{i}")) for i in range(len(out) - 1)
    ]
    assert response_id("t", "p") == str(uuid.uuid5(NAMESPACE, "task:t:p"))
    assert speaker_id("59073162") == b.speaker == str(uuid.uuid5(NAMESPACE, "event:59073162:speaker"))
    assert all(x.id == doc(x)["id"] for x in out)


def test_rebuilding_gives_the_same_responses_and_other_tasks_other_ids() -> None:
    results = [transcript(JFK, 0.0, 11.0, 0), transcript("", 11.0, 13.0, 1), transcript("Thank you.", 13.0, 15.0, 2)]
    runs = []
    for _ in range(2):
        b = builder()
        runs.append([x for r in results for x in b.build(r, 0.0, TB)])
    assert [x.json for x in runs[0]] == [x.json for x in runs[1]]
    ids = [x.id for x in runs[0]]
    assert len(set(ids)) == len(ids)
    other = builder(task_id="471386463")
    assert not {x.id for r in results for x in other.build(r, 0.0, TB)} & set(ids)
    # same event, other task: same speaker
    assert other.speaker == builder().speaker != builder(event_id="1").speaker


def test_state_restore_after_takeover_replays_nothing_twice() -> None:
    results = [transcript(f"Sentence number {i}, spoken clearly.", 4.0 * i, 4.0 * i + 4.0, i) for i in range(6)]
    a = builder()
    first = [x for r in results[:3] for x in a.build(r, 0.0, TB)]
    saved = json.loads(json.dumps(a.state()))  # what the relay keeps in Redis
    rest = [x for r in results[3:] for x in a.build(r, 0.0, TB)]

    b = builder()
    b.restore(saved)
    # audio re-sent after the takeover: results already built give nothing
    assert [x for r in results[:3] for x in b.build(r, 0.0, TB)] == []
    again = [x for r in results[3:] for x in b.build(r, 0.0, TB)]
    assert [x.json for x in again] == [x.json for x in rest]
    assert not {x.id for x in first} & {x.id for x in rest}
    assert a.state() == b.state()


def test_restore_rejects_garbage() -> None:
    b = builder()
    for bad in (
        {},
        {"v": 2, "last_caption_end": None, "last_transcript_end": None, "last_result": None, "ended": False},
        {**b.state(), "last_result": [1]},
        {**b.state(), "ended": "no"},
        {**b.state(), "last_caption_end": "x"},
        {**b.state(), "last_transcript_end": float("inf")},
    ):
        with pytest.raises(ValueError):
            b.restore(bad)


def test_captions_never_overlap_across_results() -> None:
    b = builder()
    # KWIKmotion's results overlapping by half a second (word-boundary buffering, a reconnect)
    out = b.build(transcript("one two three four five six seven", 0.0, 4.0), 0.0, TB)
    out += b.build(transcript("seven eight nine", 3.5, 5.0, 1), 0.0, TB)
    out += b.build(transcript("ten", 4.9, 5.0, 2), 0.0, TB)
    caps = [doc(c) for c in captions_of(out)]
    for prev, cur in itertools.pairwise(caps):
        assert cur["start"] >= prev["end"]
        assert cur["end"] > cur["start"]
    assert b.state()["last_caption_end"] == caps[-1]["end"]


def test_end_of_stream() -> None:
    b = builder()
    b.build(transcript(JFK, 0.0, 11.0), 0.0, TB)
    last_caption_end = b.state()["last_caption_end"]
    eos = b.end_of_stream(12.5, TB)
    assert [x.type for x in eos] == ["transcript", "captions"]
    assert all(x.is_end_of_stream and doc(x)["is_end_of_stream"] and doc(x)["is_final"] for x in eos)
    tr, cap = (doc(x) for x in eos)
    assert (tr["start"], tr["end"]) == (11.0, 12.5)  # transcripts cover the audio to its end
    assert cap["start"] == cap["end"] >= last_caption_end
    assert all(alt(x)["items"] == [] and alt(x)["transcript"] == "" for x in eos)
    assert b.ended and b.state()["ended"] is True
    assert b.build(transcript("late", 13.0, 14.0, 2), 0.0, TB) == []
    assert [x.json for x in b.end_of_stream(12.5, TB)] == [x.json for x in eos]  # same ids when repeated
    c = builder()
    c.restore(b.state())
    assert c.build(transcript("late", 13.0, 14.0, 2), 0.0, TB) == []
    assert [x.id for x in c.end_of_stream(12.5, TB)] == [x.id for x in eos]


def test_end_of_stream_before_any_result() -> None:
    tr, cap = (doc(x) for x in builder().end_of_stream(3.0, TB))
    assert (tr["start"], tr["end"], cap["start"], cap["end"]) == (3.0, 3.0, 3.0, 3.0)


def test_time_base_from_audio_chunks_with_a_pts_jump() -> None:
    tb = ChunkTimeBase()
    tb.add(AudioChunk(media_time=0.0, pts=50.0, epoch=1000.0, pcm=b""))
    tb.add(AudioChunk(media_time=5.0, pts=2.0, epoch=1006.0, pcm=b""))  # publisher reconnected
    out = builder(types="transcript").build(transcript("hello again", 1.0, 3.0), 5.0, tb)
    r = doc(out[0])
    assert (r["start"], r["start_pts"], r["start_epoch"]) == (6.0, 3.0, 1007.0)
    assert (tb.pts(1.0), tb.epoch(1.0)) == (51.0, 1001.0)
    tb.prune(5.5)
    assert len(tb) == 1 and tb.pts(6.0) == 3.0
    with pytest.raises(LookupError):
        ChunkTimeBase().pts(0.0)
    no_pts = AnchoredTimeBase.no_pts(media_time=2.0, epoch=500.0)
    assert (no_pts.pts(4.0), no_pts.epoch(4.0)) == (4.0, 502.0)  # seed: start_pts equals start


def test_bad_offset_refused() -> None:
    with pytest.raises(ValueError, match="offset"):
        builder().build(transcript("x", 0.0, 1.0), float("nan"), TB)


def test_to_entry_is_a_caption_stream_entry() -> None:
    b = builder()
    out = b.build(transcript(JFK, 0.0, 11.0), 0.0, TB) + b.end_of_stream(12.0, TB)
    for x in out:
        entry = to_entry(x, created=1_729_166_412.5)
        assert entry == CaptionEntry(json=x.json, kind=x.type, eos=x.is_end_of_stream, created=1_729_166_412.5)
        assert CaptionEntry.parse(entry.fields()) == entry
    assert [to_entry(x, 0.0).eos for x in out].count(True) == 2


def test_profanity_masked_only_when_the_profile_asks() -> None:
    text = "Holy shit, this bullshit is the shit. Blow job in Scunthorpe, a classic class."
    plain = builder().build(transcript(text, 0.0, 6.0), 0.0, TB)
    assert alt(plain[0])["transcript"] == text
    clean = builder(profanity=True).build(transcript(text, 0.0, 6.0), 0.0, TB)
    t = alt(clean[0])["transcript"]
    assert t == "Holy s***, this b******* is the s***. B*** j** in Scunthorpe, a classic class."
    # masked, never dropped: same items, same timings, same lengths
    for p, c in zip(alt(plain[0])["items"], alt(clean[0])["items"], strict=True):
        assert (p["start"], p["end"], p["kind"], len(p["value"])) == (c["start"], c["end"], c["kind"], len(c["value"]))
    caption_text = " ".join(alt(c)["transcript"] for c in clean[1:])
    assert "shit" not in caption_text and "s***" in caption_text
    assert mask("fuck") == "f***" and mask("") == ""
    assert censor_text("What the FUCK, dude") == "What the F***, dude"
    assert censor_text("bull-shit") == "b********"


def test_profanity_list_is_the_maintained_package() -> None:
    # the list comes from better-profanity's file, not from us: words we never typed are masked
    from better_profanity.utils import get_complete_path_of_file, read_wordlist

    from shared.captions.text import tokenize

    # entries that are one word to our tokenizer (leetspeak such as "sh!t" never comes out of ASR)
    words = [w for w in read_wordlist(get_complete_path_of_file("profanity_wordlist.txt")) if len(tokenize(w)) == 1]
    assert len(words) > 500
    for w in words[::50]:
        assert censor_text(f"a {w} b") == f"a {mask(w)} b"


def test_builder_does_not_mutate_its_input() -> None:
    r = transcript(JFK, 0.0, 11.0)
    before = r.model_dump()
    builder(profanity=True).build(r, 0.0, TB)
    assert r.model_dump() == before
    assert isinstance(CaptionBuilder, type)


def test_chunk_time_base_replay_and_limit() -> None:
    tb = ChunkTimeBase(limit=3)
    for i in range(5):
        tb.add(AnchoredTimeBase(float(i), 10.0 * i, 1000.0 + i))
    assert len(tb) == 3 and tb.pts(0.5) == 20.0 - 1.5  # oldest anchors dropped: the first left maps earlier times
    tb.add(AnchoredTimeBase(3.0, 99.0, 2000.0))  # the same media time re-sent: the latest wins
    assert len(tb) == 3 and (tb.pts(3.5), tb.epoch(3.5)) == (99.5, 2000.5)


def test_blocks_break_at_punctuation_where_possible() -> None:
    b = builder()
    text = "not because they are easy, but because they are hard; because that goal will serve"
    caps = captions_of(b.build(transcript(text, 0.0, 6.0), 0.0, TB))
    assert [alt(c)["transcript"] for c in caps] == [
        "not because they are easy,\nbut because they are hard;",  # two full lines ending at a phrase
        "because that\ngoal will serve",
    ]
    # a sentence end inside an overflowing block becomes the block's end (when the block is at
    # least 40% full: a very short sentence shares its block)
    text = "We went there on a Sunday. Then we came back to the house and sat by the fire"
    caps = captions_of(b.build(transcript(text, 6.0, 12.0, 1), 0.0, TB))
    assert alt(caps[0])["transcript"] == "We went there on a Sunday."
    assert alt(caps[1])["transcript"].startswith("Then we came back")
    text = "We went. Then we came back to the house and sat by the fire for a while"
    caps = captions_of(b.build(transcript(text, 12.0, 18.0, 2), 0.0, TB))
    assert alt(caps[0])["transcript"].startswith("We went. Then")
