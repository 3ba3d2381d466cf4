#!/bin/sh
# Verify a gpucensus attestation with jq, base64 and OpenSSL >= 3.0 only.
# usage: sh verify-attestation.sh ENVELOPE.json NODE.pub
set -eu
[ $# -eq 2 ] || { echo "usage: sh verify-attestation.sh ENVELOPE.json NODE.pub" >&2; exit 2; }
envelope=$1 pubkey=$2
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
jq -j '.payload' "$envelope" | base64 -d > "$work/payload"
jq -j '.signatures[0].sig' "$envelope" | base64 -d > "$work/sig"
type=$(jq -j '.payloadType' "$envelope")
# PAE = "DSSEv1" SP len(type) SP type SP len(payload) SP payload   (lengths in bytes)
printf 'DSSEv1 %d %s %d ' "$(printf %s "$type" | wc -c)" "$type" "$(wc -c < "$work/payload")" > "$work/pae"
cat "$work/payload" >> "$work/pae"
openssl pkeyutl -verify -pubin -inkey "$pubkey" -rawin -in "$work/pae" -sigfile "$work/sig"
jq -c '.predicate | {node: .node.id, sequence, previous, timestamp, totals}' "$work/payload"
