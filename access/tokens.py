"""Bearer tokens: made once, shown once, kept only as a hash.

A token is `wxa_` and 32 random bytes (url-safe base64, 43 characters): the prefix lets a secret scanner and a
reader of a config file tell what it is. Only its SHA-256 is stored (the principals topic and table); a token
has 256 random bits, so a plain hash is enough (no salt or slow hash: there is nothing to guess). Its public
`token_id`, the first 12 hex digits of that hash, names it in listings, audit records and `tokens revoke`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["TOKEN_PREFIX", "hash_token", "new_token", "token_id", "token_matches"]

TOKEN_PREFIX = "wxa_"
TOKEN_ID_HEX = 12
MAX_TOKEN_CHARS = 256  # anything longer is no token of ours; not worth hashing


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token, as stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_id(token_sha256: str) -> str:
    """The public id of a token, from its hash: enough to name it, nothing to sign in with."""
    return token_sha256[:TOKEN_ID_HEX]


def token_matches(token: str, token_sha256: str) -> bool:
    """Whether `token` is the one behind `token_sha256`, compared in constant time so the answer's timing says
    nothing about how much of the hash matched."""
    if len(token) > MAX_TOKEN_CHARS:
        return False
    return hmac.compare_digest(hash_token(token), token_sha256)
