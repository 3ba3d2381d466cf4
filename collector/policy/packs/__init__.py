"""Policy packs shipped with the collector (TOML data files, one per pack)."""

# The pack `report`, the collector config and the dashboard use when none is named: the rules in force in 2026.
DEFAULT_PACK = "us-2026"
