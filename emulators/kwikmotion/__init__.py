"""The KWIKmotion EMULATOR (``reachlive emulate kwikmotion``): the seed's WebSocket protocol with
faults on demand and each plausible reading of the seed (``variants.py``), for tests and demos.
Never a stand-in for production."""

from emulators.kwikmotion.faults import Faults
from emulators.kwikmotion.server import BANNER, KwikmotionEmulator, SessionRecord
from emulators.kwikmotion.variants import VARIANT_NAMES, VARIANTS, ResultShaper, Variant

__all__ = [
    "BANNER",
    "VARIANTS",
    "VARIANT_NAMES",
    "Faults",
    "KwikmotionEmulator",
    "ResultShaper",
    "SessionRecord",
    "Variant",
]
