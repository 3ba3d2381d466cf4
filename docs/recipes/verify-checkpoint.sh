#!/bin/sh
# Verify a gpucensus log checkpoint (a C2SP signed note) with OpenSSL >= 3.0 and POSIX tools only.
# usage: sh verify-checkpoint.sh CHECKPOINT LOG.vkey
set -eu
[ $# -eq 2 ] || { echo "usage: sh verify-checkpoint.sh CHECKPOINT LOG.vkey" >&2; exit 2; }
checkpoint=$1 vkey=$(cat "$2")
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
hex() { od -An -tx1 | tr -d ' \n'; }
# vkey = <name>+<8 hex digits key id>+<base64(0x01 || 32-byte Ed25519 public key)>
name=$(printf %s "$vkey" | cut -d+ -f1)
keyid=$(printf %s "$vkey" | cut -d+ -f2)
printf %s "$vkey" | cut -d+ -f3- | base64 -d > "$work/key"
[ "$(head -c 1 "$work/key" | hex)" = 01 ] || { echo "not an Ed25519 verifier key" >&2; exit 1; }
# key id = first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key)
[ "$({ printf '%s\n' "$name"; cat "$work/key"; } | openssl dgst -sha256 -binary | head -c 4 | hex)" = "$keyid" ] ||
  { echo "the key id does not match the key" >&2; exit 1; }
# DER SubjectPublicKeyInfo = the fixed 12-byte Ed25519 header 302a300506032b6570032100, then the 32 key bytes
{ printf '\060\052\060\005\006\003\053\145\160\003\041\000'; tail -c 32 "$work/key"; } > "$work/key.der"
# the signed text: every line before the first blank line (checkpoint lines are never empty)
sed '/^$/,$d' "$checkpoint" > "$work/body"
# signature lines: "— <name> <base64(4-byte key id || 64-byte signature)>"; use the one with our key id
for sig in $(awk -v n="$name" '$1 == "—" && $2 == n { print $3 }' "$checkpoint"); do
  printf %s "$sig" | base64 -d > "$work/sig"
  [ "$(head -c 4 "$work/sig" | hex)" = "$keyid" ] || continue
  tail -c +5 "$work/sig" > "$work/sig.raw"
  openssl pkeyutl -verify -pubin -keyform DER -inkey "$work/key.der" -rawin -in "$work/body" -sigfile "$work/sig.raw"
  printf 'origin %s\nsize %s\nroot %s\n' "$(sed -n 1p "$work/body")" "$(sed -n 2p "$work/body")" "$(sed -n 3p "$work/body")"
  exit 0
done
echo "no signature by $name+$keyid in $checkpoint" >&2
exit 1
