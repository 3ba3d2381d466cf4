"""Fixtures shared across the suite: the fake libnvidia-ml builder and the store factories, and the Hypothesis
profiles: `default` keeps `make test` bounded; `fuzz` (`make fuzz`, GPUCENSUS_FUZZ=1) tries many more inputs."""

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.integration.fakenvml_fixtures", "tests.integration.store_fixtures"]

settings.register_profile(
    "default",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    database=None,
)
settings.register_profile(
    "fuzz", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("fuzz" if os.environ.get("GPUCENSUS_FUZZ") else "default")
