"""The connection caps (sans-I/O) and the publisher slots (on the embedded Redis), issue 19."""

from __future__ import annotations

import asyncio

from services.ingest.caps import ConnectionCaps, Refusal, Slot, address_key
from services.ingest.slots import PublisherSlots
from shared import keys


def test_address_keys():
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"
    # one IPv6 host picks from a whole /64
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("") == ""


def test_pending_per_address_and_total():
    caps = ConnectionCaps(max_total=4, max_pending_per_address=2)
    a1, a2 = caps.open("10.0.0.1", 0.0), caps.open("10.0.0.1", 0.0)
    assert isinstance(a1, Slot) and isinstance(a2, Slot)
    refused = caps.open("10.0.0.1", 0.0)
    assert isinstance(refused, Refusal) and refused.cap == "per_address"
    # an accepted publisher no longer counts against its address (it still counts in the total)
    a1.published()
    a3 = caps.open("10.0.0.1", 0.0)
    assert isinstance(a3, Slot)
    b = caps.open("10.0.0.2", 0.0)
    assert isinstance(b, Slot) and caps.total == 4
    full = caps.open("10.0.0.3", 0.0)
    assert isinstance(full, Refusal) and full.cap == "total"
    for slot in (a1, a2, a3, b):
        slot.release()
        slot.release()  # idempotent
    a1.published()
    assert caps.total == 0 and caps.pending == {}


def test_one_log_line_per_address_and_interval():
    caps = ConnectionCaps(max_total=100, max_pending_per_address=1, log_seconds=60.0)
    assert isinstance(caps.open("10.0.0.1", 0.0), Slot)
    assert isinstance(caps.open("10.0.0.2", 0.0), Slot)
    lines = [caps.open("10.0.0.1", t).log for t in (1.0, 2.0, 3.0, 30.0)]
    assert lines[0] is not None and "10.0.0.1" in lines[0]
    assert lines[1:] == [None, None, None]
    other = caps.open("10.0.0.2", 4.0).log  # another address has its own line
    assert other is not None and "10.0.0.2" in other
    later = caps.open("10.0.0.1", 61.5).log
    assert later is not None and "3 more refused" in later


async def test_publisher_slots_cap_lapse_and_release(aredis, redis_client):
    slots = PublisherSlots(aredis, cap=2, ttl_seconds=0.5)
    assert await slots.take("ev1", "t1", "a")
    assert await slots.take("ev1", "t1", "b")
    assert not await slots.take("ev1", "t1", "c")
    assert await slots.take("ev1", "t1", "a")  # already ours: taken again, not refused
    assert await slots.take("ev1", "t2", "c")  # another task has its own cap
    await slots.release("ev1", "t1", "b")
    assert await slots.take("ev1", "t1", "c")
    # "a" keeps sending (renewed), "c" went silent: c's slot lapses, a's does not
    for _ in range(4):
        await asyncio.sleep(0.2)
        await slots.renew("ev1", "t1", "a")
    assert await slots.take("ev1", "t1", "d")
    assert not await slots.take("ev1", "t1", "e")
    # the set goes away with its last slot
    await asyncio.sleep(0.7)
    assert not redis_client.exists(keys.ingest_publishers("ev1", "t1"))
