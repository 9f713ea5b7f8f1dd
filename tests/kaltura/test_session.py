"""VendorSession: the vendor KS is started once, shared, renewed before it expires."""

from __future__ import annotations

import threading

from shared.kaltura import VendorSession


def test_renews_before_expiry_and_after_invalidate() -> None:
    now = [1000.0]
    started: list[str] = []

    def start() -> tuple[str, float]:
        started.append(f"ks{len(started)}")
        return started[-1], now[0] + 100.0

    session = VendorSession(start, clock=lambda: now[0])
    assert session.ks() == "ks0"
    now[0] += 89.0  # renewal margin: a tenth of the lifetime (capped at 10 minutes)
    assert session.ks() == "ks0"
    now[0] += 2.0
    assert session.ks() == "ks1"
    session.invalidate("ks0")  # a stale KS from another thread changes nothing
    assert session.ks() == "ks1"
    session.invalidate("ks1")
    assert session.ks() == "ks2" and session.renewals == 3


def test_threads_share_one_session() -> None:
    calls = []
    session = VendorSession(lambda: (calls.append(1) or "ks", 1e12))
    threads = [threading.Thread(target=session.ks) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
