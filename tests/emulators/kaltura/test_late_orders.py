"""Late orders and live rescheduling (issue 16): a task added to a live event over the admin HTTP
API (``KalturaAdmin``) shows up as the vendor sees it (getJobs, scheduleEvent.get with its
accessKey), and a window moved while live moves every task's dates with its buffers kept."""

from __future__ import annotations

import urllib.error

import pytest

from emulators.kaltura_admin import KalturaAdmin
from tests.emulators.kaltura.conftest import post, vendor_ks
from tests.emulators.kaltura.test_rules import access_key, feature_update, jobs, update


def live_event(emu, clock, **spec):
    """An event that started a minute ago (the clock's now), with a caption task, SCHEDULED."""
    start = int(clock.now) - 60
    spec.setdefault("tasks", [{"feature": 8, "source_language": "English"}])
    created = emu.create_event({"start": start, "end": start + 3600, **spec})
    ks = vendor_ks(emu)
    for task_id in created["task_ids"]:
        assert update(emu, ks, task_id, status=9)["status"] == 9
    return created, start, ks


def schedule_event(emu, event_id, task_id):
    return post(emu, "schedule_scheduleevent", "get", {"ks": access_key(emu, task_id), "scheduleEventId": event_id})


def test_add_task_to_a_live_event(emu, clock):
    created, start, ks = live_event(emu, clock, pre_start=120, post_end=300)
    event_id, [caption] = created["event_id"], created["task_ids"]
    feature_update(emu, access_key(emu, caption), event_id, caption, mediaUrl="rtmp://x/live", mediaKey="k1")

    late = KalturaAdmin(emu.url).add_task(event_id, feature=11, source_language="English", target_language="French")
    assert late.isdigit() and late != caption

    # getJobs (PENDING by default) lists the late order alone: the caption task is SCHEDULED.
    listed = jobs(emu, ks)["objects"]
    assert [t["id"] for t in listed] == [late]
    [task] = listed
    assert (task["status"], task["serviceFeature"], task["accessKey"]) == (1, 11, access_key(emu, late))
    data = task["taskJobData"]
    assert (data["startDate"], data["endDate"], data["scheduledEventId"]) == (start - 120, start + 3900, event_id)
    assert data["entryDuration"] == (3600 + 420) * 1000
    assert [t["id"] for t in jobs(emu, ks, statusIn="1,9")["objects"]] == [caption, late]

    # scheduleEvent.get, with the late task's own accessKey: one feature more, the earlier one untouched.
    event = schedule_event(emu, event_id, late)
    features = {f["systemName"]: f for f in event["liveFeatures"]}
    assert list(features) == [f"LiveCaptionFeature-reach-{caption}", f"LiveCaptionFeature-reach-{late}"]
    assert features[f"LiveCaptionFeature-reach-{caption}"]["mediaKey"] == "k1"
    assert features[f"LiveCaptionFeature-reach-{late}"] == {
        "systemName": f"LiveCaptionFeature-reach-{late}",
        "preStartTime": 120,
        "postEndTime": 300,
        "language": "fra",
        "objectType": "KalturaLiveCaptionFeature",
    }
    # The vendor provisions it as any other task.
    got = feature_update(emu, access_key(emu, late), event_id, late, mediaUrl="rtmp://x/live", mediaKey="k2")
    assert got["liveFeatures"][1]["mediaKey"] == "k2"
    assert update(emu, ks, late, status=9)["status"] == 9
    assert jobs(emu, ks)["objects"] == []

    # Same reach profile and catalog shape as an order placed with the event.
    params = {"ks": access_key(emu, late), "id": late, "responseProfile[systemName]": "reach_vendor"}
    related = post(emu, "reach_entryvendortask", "get", params)
    assert related["reachProfileId"] == emu.task(caption)["reachProfileId"]
    item = related["relatedObjects"]["reach_vendor_catalog_item"]["objects"][0]
    assert (item["serviceFeature"], item["targetLanguage"]) == (11, "French")


def test_add_task_with_its_own_buffers_and_in_process(emu, clock):
    created, start, _ks = live_event(emu, clock)
    out = emu.add_task(created["event_id"], feature=8, source_language="German", pre_start=30, post_end=90)
    assert out["feature"]["systemName"] == f"LiveCaptionFeature-reach-{out['task_id']}"
    feature = out["feature"]
    assert (feature["preStartTime"], feature["postEndTime"], feature["language"]) == (30, 90, "deu")
    data = emu.task(out["task_id"])["taskJobData"]
    assert (data["startDate"], data["endDate"]) == (start - 30, start + 3690)


def test_add_task_refusals(emu, clock):
    created, _start, ks = live_event(emu, clock)
    admin = KalturaAdmin(emu.url)
    with pytest.raises(urllib.error.HTTPError) as info:
        admin.add_task(created["event_id"], feature=11)  # a translation needs its target
    assert info.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as info:
        admin.add_task(999, feature=8)
    assert info.value.code == 404
    assert len(emu.tasks()) == 1 and len(emu.event(created["event_id"])["liveFeatures"]) == 1
    assert jobs(emu, ks)["objects"] == []


def test_window_moved_while_live_keeps_every_buffer(emu, clock):
    created, start, ks = live_event(
        emu,
        clock,
        tasks=[
            {"feature": 8, "source_language": "English", "pre_start": 60, "post_end": 120},
            {"feature": 11, "source_language": "English", "target_language": "French"},
            {"feature": 11, "source_language": "English", "target_language": "German", "post_end": 600},
        ],
    )
    event_id, (caption, french, german) = created["event_id"], created["task_ids"]
    late = emu.add_task(event_id, feature=11, source_language="English", target_language="Spanish")["task_id"]
    emu.abort(german)  # its feature is removed: its own buffers must still be kept
    admin = KalturaAdmin(emu.url)

    def dates(task_id):
        data = emu.task(task_id)["taskJobData"]
        return data["startDate"], data["endDate"], data["entryDuration"]

    # Extended while live: only the end moves.
    moved = admin.move_window(event_id, None, start + 7200)
    assert (moved["startDate"], moved["endDate"], moved["duration"]) == (start, start + 7200, 7200)
    assert dates(caption) == (start - 60, start + 7320, 7380000)
    assert dates(french) == (start, start + 7200, 7200000)
    assert dates(german) == (start, start + 7800, 7800000)
    assert dates(late) == (start, start + 7200, 7200000)
    features = {f["systemName"].rsplit("-", 1)[1]: f for f in schedule_event(emu, event_id, caption)["liveFeatures"]}
    assert {t: (f["preStartTime"], f["postEndTime"]) for t, f in features.items()} == {
        caption: (60, 120),
        french: (0, 0),
        late: (0, 0),
    }
    # getJobs shows the new dates (the SCHEDULED tasks; the aborted one is no longer listed).
    listed = {t["id"]: t["taskJobData"]["endDate"] for t in jobs(emu, ks, statusIn="1,9")["objects"]}
    assert listed == {caption: start + 7320, french: start + 7200, late: start + 7200}

    # Shortened to the past: the Kaltura admin ends the event now.
    clock.advance(600)
    now = int(clock.now)
    ended = admin.end_window(event_id, at=now - 5)
    assert (ended["startDate"], ended["endDate"]) == (start, now - 5)
    assert dates(caption)[:2] == (start - 60, now + 115)
    assert dates(french)[:2] == (start, now - 5)
    assert ended["sequence"] == 3  # one per reschedule

    # A start moved too (a both-ends reschedule over HTTP), and a window that would end before it starts.
    moved = admin.move_window(event_id, start + 10, start + 1000)
    assert dates(caption)[:2] == (start - 50, start + 1120)
    with pytest.raises(urllib.error.HTTPError) as info:
        admin.move_window(event_id, None, start)
    assert info.value.code == 400
    # Ending an event at (or before) its start moves the start too: a window needs end > start.
    ended = admin.end_window(event_id, at=start)
    assert (ended["startDate"], ended["endDate"]) == (start - 1, start)
    assert dates(caption)[:2] == (start - 61, start + 120)


def test_demo_scenario_orders_late(emu, clock):
    from services.demo import scenario

    admin = KalturaAdmin(emu.url)
    run = scenario.order(admin, translations=("French",), duration=600)
    late = scenario.order_late(admin, run, "German")
    captions = scenario.order_late(admin, run, None, source="Spanish")
    assert run.task_ids[2:] == [late, captions]
    assert (emu.task(late)["serviceFeature"], emu.task(captions)["serviceFeature"]) == (11, 8)
    assert emu.feature(late)["language"] == "deu" and emu.feature(captions)["language"] == "spa"
    assert set(admin.features(run.event_id)) == set(run.task_ids)
