"""The auditor's side of gpucensus (`gpucensus-audit`): envelope files, audit bundles, and the log witness."""
