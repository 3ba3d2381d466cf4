"""Continuous compliance: the policy evaluation kept current at ingest (`state`), its scope (`scope`)."""
