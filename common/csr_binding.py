"""What binds a TLS certificate request to an enrolled node key (collector-issued client certificates).

The agent's TLS key is not its attestation key (one key, one purpose: an attestation key never signs TLS
handshakes). To get a certificate for its TLS key, the agent signs `CONTEXT || csr_der` with its enrolled Ed25519
node key; the collector checks that signature against the enrolled key, so only the holder of an enrolled,
unrevoked key obtains a certificate naming that key's node, and a captured request is useless without the TLS
private key the CSR is for. The context string keeps the signature from meaning anything else (it can never be
a valid DSSE PAE, which starts with "DSSEv1").
"""

from __future__ import annotations

CONTEXT = b"gpucensus-csr/v1\n"
MAX_CSR_BYTES = 4096  # a P-256/P-384 request is about 250-400 bytes


def signed_message(csr_der: bytes) -> bytes:
    """The bytes the node key signs for `csr_der`."""
    return CONTEXT + csr_der
