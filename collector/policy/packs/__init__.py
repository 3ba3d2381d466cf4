"""Policy packs shipped with the collector (TOML data files, one per pack)."""
