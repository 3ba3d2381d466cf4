"""The collector's transparency log (RFC 9162 Merkle tree, C2SP checkpoints): appending to the stored tree
(`append`), the background integrator and signer (`integrator`), the log key and the last signed checkpoint kept
outside the database (`state`), and proofs served from the stored hashes (`proofs`). docs/architecture.md,
"Transparency log"."""
