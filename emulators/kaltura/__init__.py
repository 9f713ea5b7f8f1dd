"""Kaltura EMULATOR: the Kaltura REACH / Schedule API as a vendor meets it, for tests and demos
(seeds/kaltura-reach-live-captions.txt, facts.md; interface: /tmp/kaltura_emulator_api.md).

    from emulators.kaltura import KalturaEmulator
    with KalturaEmulator(partner_id=5173642, admin_secret="vendor-secret") as emu:
        order = emu.create_event(start=..., end=..., tasks=[{"feature": 8, "source_language": "English"}])
        ...  # point REACHLIVE_KALTURA_SERVICE_URL at emu.url
"""

from emulators.kaltura.server import BANNER, KalturaEmulator

__all__ = ["BANNER", "KalturaEmulator"]
