"""Fixtures shared across the suite: the fake libnvidia-ml builder and the store factories."""

pytest_plugins = ["tests.integration.fakenvml_fixtures", "tests.integration.store_fixtures"]
