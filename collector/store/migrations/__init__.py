"""Versioned schema migrations: `NNNN_<name>.<dialect>.sql`, applied in order, recorded in `schema_version`."""
