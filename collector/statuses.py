"""The one table that turns errors into gRPC status codes (docs/formats.md, "Wire"). Only the servicer uses it.

Anything not in the table is a bug in the collector: INTERNAL, logged with its traceback, never a crash.
UNAVAILABLE is the only status an agent retries (with backoff), so only store trouble maps to it. A message
over the 1 MiB limit never reaches the servicer: grpc itself answers RESOURCE_EXHAUSTED. A `LimitError` (too many
streams, a key over its budget) is RESOURCE_EXHAUSTED too, with a retry-after trailer: the agent retries later.
"""

from __future__ import annotations

import grpc
from gpucensus.collector.errors import ConfigError, StoreError
from gpucensus.collector.ingest import errors
from gpucensus.collector.limits import LimitError
from gpucensus.collector.log.service import LogRangeError, NoCheckpointError
from gpucensus.collector.store.base import NodeBoundError, RecordExistsError, RecordNotFoundError, TokenRejectedError

STATUS_TABLE: dict[type[BaseException], grpc.StatusCode] = {
    errors.MalformedError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.MalformedFactError: grpc.StatusCode.INVALID_ARGUMENT,  # a signed fact recompute cannot use
    ConfigError: grpc.StatusCode.INVALID_ARGUMENT,  # a request field the registry's validation refuses
    errors.SignatureError: grpc.StatusCode.UNAUTHENTICATED,
    errors.UnknownKeyError: grpc.StatusCode.PERMISSION_DENIED,
    errors.RevokedKeyError: grpc.StatusCode.PERMISSION_DENIED,
    errors.BindingError: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotOfferedError: grpc.StatusCode.FAILED_PRECONDITION,  # e.g. client certificates when none are issued
    TokenRejectedError: grpc.StatusCode.PERMISSION_DENIED,
    NodeBoundError: grpc.StatusCode.PERMISSION_DENIED,  # a token never rebinds an enrolled node id (nor a key)
    RecordExistsError: grpc.StatusCode.ALREADY_EXISTS,
    RecordNotFoundError: grpc.StatusCode.NOT_FOUND,
    StoreError: grpc.StatusCode.UNAVAILABLE,
    LimitError: grpc.StatusCode.RESOURCE_EXHAUSTED,  # retry later: nothing was stored
    LogRangeError: grpc.StatusCode.OUT_OF_RANGE,  # a proof for an index or size the log does not have
    NoCheckpointError: grpc.StatusCode.FAILED_PRECONDITION,  # a new log signs its first one within a second
}


def status_for(error: BaseException) -> grpc.StatusCode:
    """The status for an error: the table entry of its nearest class, INTERNAL when none matches."""
    for cls in type(error).__mro__:
        if cls in STATUS_TABLE:
            return STATUS_TABLE[cls]
    return grpc.StatusCode.INTERNAL
