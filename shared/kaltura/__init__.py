"""The Kaltura side of reachlive: a facade over the official client, typed errors, languages."""

from shared.kaltura.client import KalturaFacade, VendorSession
from shared.kaltura.errors import KalturaError, KalturaPermanentError, KalturaRetryableError
from shared.kaltura.languages import Language, UnsupportedLanguage, resolve

__all__ = [
    "KalturaError",
    "KalturaFacade",
    "KalturaPermanentError",
    "KalturaRetryableError",
    "Language",
    "UnsupportedLanguage",
    "VendorSession",
    "resolve",
]
