"""The KWIKmotion EMULATOR (``reachlive emulate kwikmotion``): the seed's WebSocket protocol with
faults on demand, for tests and demos. Never a stand-in for production."""

from emulators.kwikmotion.faults import Faults
from emulators.kwikmotion.server import BANNER, KwikmotionEmulator, SessionRecord

__all__ = ["BANNER", "Faults", "KwikmotionEmulator", "SessionRecord"]
