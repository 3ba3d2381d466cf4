"""GPU discovery backends behind one Protocol, chosen by name from an explicit registry.

Registry name = module name = config value: `nvml` -> `agent/backends/nvml.py` -> `NvmlBackend`. Modules are
imported only when chosen, so importing this package never loads `pynvml`.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from gpucensus.common.devices import Discovery
from gpucensus.common.errors import ConfigError

BACKENDS: dict[str, str] = {
    "nvml": "gpucensus.agent.backends.nvml:NvmlBackend",
    "mock": "gpucensus.agent.backends.mock:MockBackend",
}


class Backend(Protocol):
    """Finds the node's physical GPUs and the driver facts; one call, no state kept between calls."""

    name: str

    def discover(self) -> Discovery: ...


def create_backend(name: str, **options: Any) -> Backend:
    """Construct the backend registered under `name`; an unknown name is a configuration error."""
    target = BACKENDS.get(name)
    if target is None:
        raise ConfigError(f"unknown backend {name!r}", hint=f"choose one of: {', '.join(sorted(BACKENDS))}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] == "gpucensus":  # our own code missing: a bug, not a missing extra
            raise
        raise ConfigError(
            f"the {name} backend needs the Python module {err.name!r}, which is not installed",
            hint="install the agent with its extra: pip install 'gpucensus[agent]'",
        ) from err
    backend_class = getattr(module, class_name)
    return backend_class(**options)
