"""Build the fake `libnvidia-ml.so.1` from `fakenvml.c` with the system C compiler.

`build_library(cache_dir, omit=("nvmlDeviceGetAttributes_v2",))` returns the directory holding the built
library (put it on LD_LIBRARY_PATH). Entry points named in `omit` are hidden from the dynamic symbol table by a
linker version script, so `dlsym` fails for them exactly as with an older real driver and pynvml raises
FUNCTION_NOT_FOUND by itself. Builds are cached by a hash of the source and the omitted names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

SOURCE = Path(__file__).with_name("fakenvml.c")
PROFILES = Path(__file__).with_name("profiles")
LIBRARY_NAME = "libnvidia-ml.so.1"


def compiler() -> str | None:
    """The C compiler to use (`$CC`, else `cc`), or None when there is none."""
    name = os.environ.get("CC", "cc")
    return shutil.which(name)


def build_library(cache_dir: Path, omit: Iterable[str] = ()) -> Path:
    """Compile (once per source and `omit` set) and return the directory holding `libnvidia-ml.so.1`."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (install gcc or set CC) to build the fake libnvidia-ml")
    hidden = sorted(set(omit))
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + "\0".join(hidden).encode()).hexdigest()[:16]
    out_dir = Path(cache_dir) / f"fakenvml-{key}"
    library = out_dir / LIBRARY_NAME
    if library.exists():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [cc, "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", f"-Wl,-soname,{LIBRARY_NAME}"]
    if hidden:
        script = out_dir / "hide.map"
        script.write_text("{ global: nvml*; local: " + " ".join(f"{name};" for name in hidden) + " };\n")
        command.append(f"-Wl,--version-script={script}")
    partial = out_dir / f"{LIBRARY_NAME}.partial"
    command += ["-o", str(partial), str(SOURCE)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"building the fake libnvidia-ml failed:\n{' '.join(command)}\n{result.stderr}")
    partial.replace(library)
    return out_dir
