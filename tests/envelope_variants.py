"""Byte variants of a genuine envelope that anyone holding a copy can make without the key (issue 8, finding 1):
the same payload and signature in another byte form. The collector and `gpucensus-audit` must refuse each."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TypeVar

from gpucensus.common import jcs

T = TypeVar("T")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _edit(envelope: bytes, change: Callable[[dict], None]) -> bytes:
    obj = json.loads(envelope)
    change(obj)
    return jcs.canonical_bytes(obj)


def extra_signature(envelope: bytes) -> bytes:
    """The issue's reproduction: a bogus second signature with the same keyid, re-serialized in JCS."""
    keyid = json.loads(envelope)["signatures"][0]["keyid"]
    return _edit(envelope, lambda obj: obj["signatures"].append({"keyid": keyid, "sig": "AAAA"}))


def url_safe(envelope: bytes) -> bytes:
    """Payload and signature in the URL-safe base64 alphabet (same bytes once decoded)."""

    def change(obj: dict) -> None:
        obj["payload"] = base64.urlsafe_b64encode(base64.b64decode(obj["payload"])).decode()
        for signature in obj["signatures"]:
            signature["sig"] = base64.urlsafe_b64encode(base64.b64decode(signature["sig"])).decode()

    return _edit(envelope, change)


def pad_bits(envelope: bytes) -> bytes:
    """The signature's base64 with a non-zero pad bit (a 64-byte signature ends in 'x==': 4 pad bits)."""

    def change(obj: dict) -> None:
        sig = obj["signatures"][0]["sig"]
        assert sig.endswith("==") and not sig.endswith("===")
        last = _ALPHABET[_ALPHABET.index(sig[-3]) | 1]
        obj["signatures"][0]["sig"] = sig[:-3] + last + "=="

    return _edit(envelope, change)


def unpadded(envelope: bytes) -> bytes:
    """The signature's base64 without its '=' padding."""
    return _edit(envelope, lambda obj: obj["signatures"][0].update(sig=obj["signatures"][0]["sig"].rstrip("=")))


def no_keyid(envelope: bytes) -> bytes:
    return _edit(envelope, lambda obj: obj["signatures"][0].pop("keyid"))


def unknown_field(envelope: bytes) -> bytes:
    return _edit(envelope, lambda obj: obj["signatures"][0].update(extra="x"))


VARIANTS: dict[str, Callable[[bytes], bytes]] = {
    "extra-signature": extra_signature,
    "url-safe-base64": url_safe,
    "non-zero-pad-bits": pad_bits,
    "unpadded-base64": unpadded,
    "no-keyid": no_keyid,
    "unknown-signature-field": unknown_field,
}


def with_distinct_variants(new: Callable[[], T], sign: Callable[[T], bytes]) -> T:
    """A new key (or node) whose envelope `sign(it)` differs from every variant of it. The URL-safe alphabet
    changes only a '+' or '/': a random 64-byte signature has neither about once in 15 (a JSON payload's base64
    seldom has one), and then its URL-safe form is the envelope itself, no variant at all."""
    while True:
        candidate = new()
        envelope = sign(candidate)
        if all(make(envelope) != envelope for make in VARIANTS.values()):
            return candidate
