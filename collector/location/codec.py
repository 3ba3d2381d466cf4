"""Landmarks to their protobuf form (`ListLandmarks`): the one place location records meet generated types."""

from __future__ import annotations

from collections.abc import Iterable

from gpucensus.collector.location.records import Landmark
from gpucensus.protos import census_pb2 as pb


def landmarks_to_pb(landmarks: Iterable[Landmark]) -> pb.ListLandmarksResponse:
    return pb.ListLandmarksResponse(
        landmarks=[pb.Landmark(name=lm.name, address=lm.address, public_key_pem=lm.public_key_pem) for lm in landmarks]
    )
