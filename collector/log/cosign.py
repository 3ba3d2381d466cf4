"""Witness cosignatures for the current checkpoint (`gpucensus-collector log cosign FILE`).

A witness (e.g. `gpucensus-audit witness --cosign-key`) answers with C2SP tlog-cosignature lines over the
checkpoint it accepted: FILE is that checkpoint with the lines appended, or the lines alone. Only cosignatures by
a known witness key (`[log] witness_keys`, `--vkey`) over exactly the current checkpoint are kept; they go to the
cosignatures file beside the checkpoint file, and the collector serves them appended to that checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gpucensus.collector.log import state
from gpucensus.common import note
from gpucensus.common.durable import atomic_write
from gpucensus.common.errors import ConfigError


def witness_keys(texts: Sequence[str]) -> list[note.VerifierKey]:
    keys = []
    for text in texts:
        try:
            key = note.VerifierKey.parse(text)
        except note.NoteError as err:
            raise ConfigError(f"witness key {text[:80]!r} is not a verifier key: {err.message}") from err
        keys.append(key)
    return keys


def add_cosignatures(
    checkpoint_path: Path, signed: state.Signed, data: bytes, keys: Sequence[note.VerifierKey]
) -> list[str]:
    """Keep the cosignatures in `data` by `keys` over `signed`; the witness names kept. ConfigError when there
    is none: another checkpoint, an unknown witness, a signature that does not verify, or no note at all."""
    if not keys:
        raise ConfigError("no witness key to check the cosignature with", hint="pass --vkey or set [log] witness_keys")
    ours = note.parse_note(signed.note)
    try:
        given = note.parse_note(data)
    except note.NoteError:
        try:  # the cosignature lines alone
            given = note.parse_note(ours.text.encode("utf-8") + b"\n" + data)
        except note.NoteError as err:
            raise ConfigError(f"the file is neither a cosigned note nor cosignature lines: {err.message}") from err
    if given.text != ours.text:
        raise ConfigError(
            "the cosigned checkpoint is not the current one",
            hint="have the witness cosign the output of `gpucensus-collector log checkpoint`",
        )
    by_key = {(k.name, k.key_id): k for k in keys if k.sig_type == note.COSIGNATURE_V1}
    kept = []
    for signature in given.signatures:
        key = by_key.get((signature.name, signature.key_id))
        if key is None:
            continue
        try:
            key.verify(ours.text.encode("utf-8"), signature.signature)
        except note.NoteError as err:
            raise ConfigError(f"the cosignature by {signature.name} does not verify: {err.message}") from err
        kept.append(signature)
    if not kept:
        names = ", ".join(str(k) for k in keys)
        raise ConfigError(f"the file carries no cosignature by a known witness key ({names})")
    current = note.parse_note(state.load_cosigned(checkpoint_path, signed))
    atomic_write(state.cosigned_path(checkpoint_path), current.with_signatures(kept).format(), mode=0o600)
    return [s.name for s in kept]
