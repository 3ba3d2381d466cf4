"""Check that one envelope is in a gpucensus log checkpoint (RFC 9162 inclusion proof), standard library only.
usage: python3 verify-inclusion.py CHECKPOINT ENVELOPE PROOF   (check the checkpoint's signature first)"""

import base64
import hashlib
import json
import sys
from pathlib import Path

checkpoint, envelope, proof_file = (Path(arg) for arg in sys.argv[1:4])
origin, size, root = checkpoint.read_text().split("\n")[:3]  # the first three lines of the signed note
proof = json.loads(proof_file.read_text())
index, tree_size = proof["log_index"], proof["tree_size"]
if tree_size != int(size) or not 0 <= index < tree_size:
    sys.exit(f"FAIL the proof is for leaf {index} of a tree of size {tree_size}; the checkpoint's size is {size}")


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


r = hashlib.sha256(b"\x00" + envelope.read_bytes()).digest()  # the leaf hash of the envelope's exact bytes
fn, sn = index, tree_size - 1
for p in (base64.b64decode(h) for h in proof["hashes"]):
    if sn == 0:
        sys.exit("FAIL the proof is too long")
    if fn & 1 or fn == sn:
        r = node(p, r)
        while fn and not fn & 1:
            fn, sn = fn >> 1, sn >> 1
    else:
        r = node(r, p)
    fn, sn = fn >> 1, sn >> 1
if sn != 0 or r != base64.b64decode(root):
    sys.exit(f"FAIL {envelope} is not leaf {index} of the tree of size {size} with root {root}")
print(f"OK {envelope} is leaf {index} of {origin}, tree size {size}, root {root}")
