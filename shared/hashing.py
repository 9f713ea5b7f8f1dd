"""Secrets (media keys, caption tokens) are stored only as hashes (docs/design.md section 2)."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret() -> str:
    """A fresh URL-safe random secret of 192 bits (≥128 bits as docs/design.md section 2 asks)."""
    return secrets.token_urlsafe(24)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(given: str, expected_hash: str) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    return hmac.compare_digest(secret_hash(given), expected_hash)
