"""Run the real `NvmlBackend().discover()` and print the result as JSON: the tests run this in a subprocess
with LD_LIBRARY_PATH pointing at the fake libnvidia-ml and FAKENVML_PROFILE naming its profile.

Usage: python discover_json.py [LIBRARY_PATH]. Prints {"discovery": ...} and exits 0, or prints
{"error": {"type", "message", "hint", "exit_code"}} and exits with the error's exit code.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from gpucensus.agent.backends.nvml import NvmlBackend
from gpucensus.common.errors import GpucensusError


def main(argv: list[str]) -> int:
    try:
        discovery = NvmlBackend(argv[0] if argv else None).discover()
    except GpucensusError as error:
        fields = {"type": type(error).__name__, "message": error.message, "hint": error.hint}
        json.dump({"error": {**fields, "exit_code": error.exit_code}}, sys.stdout)
        return error.exit_code
    json.dump({"discovery": dataclasses.asdict(discovery)}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
