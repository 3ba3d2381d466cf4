"""One table maps errors to statuses; the codec carries verdicts as data (docs/formats.md, "Wire")."""

from __future__ import annotations

import grpc
import pytest
from gpucensus.collector import codec
from gpucensus.collector.errors import ConfigError, StoreError
from gpucensus.collector.ingest import errors
from gpucensus.collector.ingest.model import ACCEPTED, REJECTED, Finding, IngestResult
from gpucensus.collector.statuses import status_for
from gpucensus.collector.store.base import RecordExistsError, RecordNotFoundError, TokenRejectedError
from gpucensus.protos import census_pb2 as pb


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.MalformedError("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.MalformedFactError("devices[0].sm_count", "must be an integer"), grpc.StatusCode.INVALID_ARGUMENT),
        (ConfigError("bad node id"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.SignatureError("x"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.UnknownKeyError("x"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.RevokedKeyError("x"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.BindingError("x"), grpc.StatusCode.PERMISSION_DENIED),
        (TokenRejectedError("x"), grpc.StatusCode.PERMISSION_DENIED),
        (RecordExistsError("x"), grpc.StatusCode.ALREADY_EXISTS),
        (RecordNotFoundError("x"), grpc.StatusCode.NOT_FOUND),
        (StoreError("database down"), grpc.StatusCode.UNAVAILABLE),
        (ZeroDivisionError(), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_table(error: BaseException, code: grpc.StatusCode) -> None:
    assert status_for(error) is code


def test_only_the_store_being_down_is_retryable() -> None:
    from gpucensus.collector.statuses import STATUS_TABLE

    retryable = [cls for cls, code in STATUS_TABLE.items() if code is grpc.StatusCode.UNAVAILABLE]
    assert retryable == [StoreError]


def test_an_accepted_ack_round_trips_with_log_index_zero_present() -> None:
    finding = Finding("chain.missing-attestations", "warning", "node:n1", "sequence 2 missing")
    result = IngestResult("k" * 64, 3, ACCEPTED, log_index=0, duplicate=True, findings=(finding,))
    ack = codec.ack_to_pb(result)
    assert ack.HasField("log_index") and ack.status == pb.ACK_STATUS_ACCEPTED
    assert ack.findings[0].severity == pb.SEVERITY_WARNING
    assert codec.ack_from_pb(pb.Ack.FromString(ack.SerializeToString())) == result


def test_a_rejected_ack_has_no_log_index() -> None:
    ack = codec.ack_to_pb(IngestResult("k" * 64, 3, REJECTED))
    assert not ack.HasField("log_index") and ack.status == pb.ACK_STATUS_REJECTED
