"""Why an envelope could not be judged at all. Each type maps to one gRPC status in `collector/statuses.py`.

A chain or policy verdict on a validly signed attestation is not an error: it is a `Finding` in the ack.
"""

from __future__ import annotations


class IngestError(Exception):
    """An envelope the collector cannot process; the message names what was wrong."""


class MalformedError(IngestError):
    """Not a DSSE envelope, not an in-toto statement, or a predicate missing what the collector needs."""


class SignatureError(IngestError):
    """The signature does not verify against the enrolled key (tampered, or signed by another key)."""


class UnknownKeyError(IngestError):
    """No key with this keyid is enrolled."""


class RevokedKeyError(IngestError):
    """The key was enrolled and has been revoked."""


class BindingError(IngestError):
    """The statement's node is not the node the key is bound to, or the TLS client is another node."""


class NotOfferedError(IngestError):
    """The request asks for something this collector is not configured to do."""


class MalformedFactError(MalformedError):
    """A signed fact recompute cannot use (wrong type, out of range, not a hex id ...); `field` names it,
    e.g. `devices[3].pci.device_id`, and the message starts with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
