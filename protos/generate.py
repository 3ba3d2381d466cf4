"""Regenerate the Python of `protos/census.proto`: `make protos` runs `python protos/generate.py`.

The proto is compiled from the repository root with `-I .`, so protoc writes `from protos import census_pb2`; the
generated modules are then moved into the `gpucensus` namespace the wheel installs them under
(`gpucensus.protos.census_pb2`). Use the grpcio-tools pinned in pyproject's `test` extra: another version
generates different code and `tests/unit/test_protos_fresh.py` fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = "protos/census.proto"
GENERATED = ("protos/census_pb2.py", "protos/census_pb2_grpc.py", "protos/census_pb2.pyi")
NAMESPACED = (  # what protoc writes -> the module names the package is installed under
    ("from protos import census_pb2", "from gpucensus.protos import census_pb2"),
    ("'protos.census_pb2'", "'gpucensus.protos.census_pb2'"),
)


def generate(out_dir: Path = ROOT) -> list[Path]:
    """Compile the proto into `out_dir` (the repository root by default); return the generated files."""
    from grpc_tools import protoc  # the pinned code generator; a test/dev dependency only

    (out_dir / "protos").mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(ROOT / PROTO),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
    paths = [out_dir / name for name in GENERATED]
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for old, new in NAMESPACED:
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
    return paths


def main() -> int:
    for path in generate():
        print(f"generated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
