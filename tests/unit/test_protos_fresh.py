"""The checked-in generated code is exactly what the pinned grpcio-tools makes of `protos/census.proto`, and
pyproject's runtime floors are at least what that generated code demands at import time."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from gpucensus.protos.generate import GENERATED, ROOT, generate


def _floor(requirement_name: str) -> tuple[int, ...]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([0-9.]+)", dep.strip())
        if match and match.group(1).split("[")[0].lower() == requirement_name:
            return _version(match.group(2))
    raise AssertionError(f"pyproject.toml has no '{requirement_name}>=X' dependency")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@pytest.mark.parametrize("name", GENERATED)
def test_checked_in_code_matches_a_fresh_generation(tmp_path: Path, name: str) -> None:
    generate(tmp_path)
    fresh = (tmp_path / name).read_text()
    checked_in = (ROOT / name).read_text()
    assert checked_in == fresh, f"{name} is stale: run `make protos` and commit the result"


def test_grpcio_floor_covers_the_generated_grpc_code() -> None:
    text = (ROOT / "protos/census_pb2_grpc.py").read_text()
    match = re.search(r"^GRPC_GENERATED_VERSION = '([0-9.]+)'$", text, re.MULTILINE)
    assert match, "GRPC_GENERATED_VERSION not found in census_pb2_grpc.py"
    assert _floor("grpcio") >= _version(match.group(1))


def test_protobuf_floor_covers_the_generated_message_code() -> None:
    text = (ROOT / "protos/census_pb2.py").read_text()
    match = re.search(
        r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),",
        text,
    )
    assert match, "the protobuf runtime version check was not found in census_pb2.py"
    required = tuple(int(part) for part in match.groups())
    assert _floor("protobuf") >= required
