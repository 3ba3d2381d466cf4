#!/usr/bin/env bash
# Certificates for gpucensus mutual TLS, with OpenSSL only: a private CA for one installation, the collector's
# server certificate and one client certificate per node (common name = node id, as the collector requires).
#
# Keys are ECDSA P-256 (certificates signed with ecdsa-with-SHA256). Not Ed25519: grpcio's TLS library
# (BoringSSL) does not offer Ed25519 for TLS handshake signatures, so an Ed25519 certificate fails with
# NO_COMMON_SIGNATURE_ALGORITHMS; P-256 works with BoringSSL, OpenSSL, Go and every browser.
#
# Nothing is ever overwritten: every file is made in a private staging directory and then linked into place
# with `ln` (which fails on an existing file); a run that would overwrite anything stops before it starts.
# Run it again with the same --out to issue more node certificates from the existing CA.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bootstrap.sh --out DIR [--san NAME|IP]... [--node NODE_ID]... [--days N] [--ca-days N] [--name NAME]

Creates, in DIR (never overwriting a file):
  ca.pem, ca.key              the installation's CA (created if DIR has none, reused otherwise)
  server.pem, server.key      the collector's certificate, for every --san (DNS name or IP address)
  nodes/NODE_ID.pem, .key     one client certificate per --node (CN = node id, extendedKeyUsage clientAuth)

Options:
  --out DIR        output directory (created mode 0700 if missing)
  --san NAME|IP    a name the agents use to reach the collector; repeat for more (DNS:x / IP:x to force a type)
  --node NODE_ID   a node id (the agent's node.id): 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit
  --days N         validity of the server and node certificates (default 365)
  --ca-days N      validity of a new CA (default 3650)
  --name NAME      installation name, in the CA's subject (default gpucensus)
  -h, --help       this text

Keys: ECDSA P-256, unencrypted PEM, mode 0600. Keep ca.key off the collector once the certificates are made.

Example:
  bootstrap.sh --out /etc/gpucensus/pki --san collector.example.org --san 10.0.0.5 --node gpu-01 --node gpu-02
  bootstrap.sh --out /etc/gpucensus/pki --node gpu-03          # later: one more node, same CA
EOF
}

die() {
    printf 'bootstrap.sh: %s\n' "$1" >&2
    exit "${2:-1}"
}

out="" days=365 ca_days=3650 name=gpucensus
sans=() nodes=()
while [ $# -gt 0 ]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --out | --san | --node | --days | --ca-days | --name)
            [ $# -ge 2 ] || die "$1 needs a value (see --help)" 2
            case $1 in
                --out) out=$2 ;;
                --san) sans+=("$2") ;;
                --node) nodes+=("$2") ;;
                --days) days=$2 ;;
                --ca-days) ca_days=$2 ;;
                --name) name=$2 ;;
            esac
            shift 2
            ;;
        *) usage >&2; die "unknown argument: $1" 2 ;;
    esac
done

[ -n "$out" ] || { usage >&2; die "--out DIR is required" 2; }
[ ${#sans[@]} -gt 0 ] || [ ${#nodes[@]} -gt 0 ] || die "nothing to issue: give --san (server) and/or --node" 2
for value in "$days" "$ca_days"; do
    [[ $value =~ ^[1-9][0-9]{0,5}$ ]] || die "--days and --ca-days must be whole numbers of days (1-999999)" 2
done
[[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._\ -]{0,40}$ ]] || die "--name: letters, digits, space, '.', '_', '-'" 2

# --san: an IPv4/IPv6 address becomes IP:, anything else DNS: (checked, so it cannot break the config file)
san_list=""
for san in "${sans[@]+"${sans[@]}"}"; do
    case $san in
        IP:* | DNS:*) kind=${san%%:*} value=${san#*:} ;;
        *:*) kind=IP value=$san ;;
        *) if [[ $san =~ ^[0-9]+(\.[0-9]+){3}$ ]]; then kind=IP; else kind=DNS; fi; value=$san ;;
    esac
    if [ "$kind" = IP ]; then
        [[ $value =~ ^[0-9A-Fa-f:.]+$ ]] || die "--san $san: not a DNS name or an IP address" 2
    else
        [[ $value =~ ^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$ ]] \
            || die "--san $san: not a DNS name or an IP address" 2
    fi
    san_list+="${san_list:+,}$kind:$value"
done
first_san=${sans[0]-}
case $first_san in IP:* | DNS:*) first_san=${first_san#*:} ;; esac
[ ${#sans[@]} -eq 0 ] || [ ${#first_san} -le 64 ] || die "--san $first_san: the first name must be <= 64 characters" 2

seen=" "
for node in "${nodes[@]+"${nodes[@]}"}"; do
    [[ $node =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] \
        || die "--node $node: use 1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit" 2
    case $seen in *" $node "*) die "--node $node is given twice" 2 ;; esac
    seen+="$node "
done

# every file this run would create must be new
targets=()
[ ${#sans[@]} -eq 0 ] || targets+=(server.pem server.key)
for node in "${nodes[@]+"${nodes[@]}"}"; do targets+=("nodes/$node.pem" "nodes/$node.key"); done
for target in "${targets[@]}"; do
    [ ! -e "$out/$target" ] && [ ! -L "$out/$target" ] || die "$out/$target exists: refusing to overwrite it"
done
if [ -e "$out/ca.pem" ] || [ -e "$out/ca.key" ]; then
    [ -e "$out/ca.pem" ] && [ -e "$out/ca.key" ] || die "$out has only one of ca.pem and ca.key: restore the other"
    new_ca=0
    openssl x509 -in "$out/ca.pem" -noout 2>/dev/null || die "$out/ca.pem is not a PEM certificate"
    openssl pkey -in "$out/ca.key" -noout 2>/dev/null || die "$out/ca.key is not an unencrypted PEM private key"
    [ "$(openssl x509 -in "$out/ca.pem" -noout -pubkey)" = "$(openssl pkey -in "$out/ca.key" -pubout)" ] \
        || die "$out/ca.key does not belong to $out/ca.pem"
    openssl x509 -in "$out/ca.pem" -noout -checkend $((days * 86400)) >/dev/null \
        || die "the CA $out/ca.pem expires within --days $days: use fewer days, or a new --out with a new CA"
else
    new_ca=1
    [ "$days" -le "$ca_days" ] || die "--days $days is longer than the CA's --ca-days $ca_days" 2
fi

umask 077 # keys (and the staging directory) are private to their owner
mkdir -p "$out"
out=$(cd "$out" && pwd) # absolute, for the settings printed at the end
stage="$out/.bootstrap-staging.$$"
mkdir "$stage"
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/nodes"

# [ca] for the self-signed CA (openssl req); [server] and [client] for the certificates it issues (openssl x509)
{
    printf '%s\n' '[req]' 'distinguished_name = dn' '[dn]' \
        '[ca]' 'basicConstraints = critical, CA:TRUE, pathlen:0' 'keyUsage = critical, keyCertSign, cRLSign' \
        'subjectKeyIdentifier = hash'
    printf '%s\n' '[server]' 'basicConstraints = critical, CA:FALSE' 'keyUsage = critical, digitalSignature' \
        'extendedKeyUsage = serverAuth' 'subjectKeyIdentifier = hash' 'authorityKeyIdentifier = keyid'
    [ -z "$san_list" ] || printf 'subjectAltName = %s\n' "$san_list"
    printf '%s\n' '[client]' 'basicConstraints = critical, CA:FALSE' 'keyUsage = critical, digitalSignature' \
        'extendedKeyUsage = clientAuth' 'subjectKeyIdentifier = hash' 'authorityKeyIdentifier = keyid'
} >"$stage/openssl.cnf"

new_key() { # FILE: an unencrypted ECDSA P-256 key (PKCS#8 PEM), mode 0600 through the umask
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve -out "$1" \
        2>/dev/null || die "openssl could not create an ECDSA P-256 key"
}

issue() { # SECTION PURPOSE SUBJECT NAME: NAME.key + NAME.pem signed by the CA with the extensions of SECTION
    local err
    new_key "$stage/$4.key"
    err=$(openssl req -new -config "$stage/openssl.cnf" -key "$stage/$4.key" -subj "$3" -out "$stage/$4.csr" 2>&1) \
        || die "openssl could not make the request for $4: $err"
    err=$(openssl x509 -req -in "$stage/$4.csr" -CA "$ca_pem" -CAkey "$ca_key" -sha256 -days "$days" \
        -set_serial "0x$(openssl rand -hex 16)" -extfile "$stage/openssl.cnf" -extensions "$1" \
        -out "$stage/$4.pem" 2>&1) || die "openssl could not issue $4.pem: $err"
    chmod 644 "$stage/$4.pem"
    err=$(openssl verify -CAfile "$ca_pem" -purpose "$2" "$stage/$4.pem" 2>&1) \
        || die "the new $4.pem does not verify against the CA: $err"
}

if [ "$new_ca" = 1 ]; then
    ca_pem="$stage/ca.pem" ca_key="$stage/ca.key"
    new_key "$ca_key"
    openssl req -new -x509 -config "$stage/openssl.cnf" -extensions ca -key "$ca_key" -sha256 \
        -subj "/O=$name/CN=$name mTLS CA" -days "$ca_days" -set_serial "0x$(openssl rand -hex 16)" -out "$ca_pem"
    chmod 644 "$ca_pem"
    targets=(ca.pem ca.key "${targets[@]}")
else
    ca_pem="$out/ca.pem" ca_key="$out/ca.key"
fi
[ ${#sans[@]} -eq 0 ] || issue server sslserver "/O=$name/CN=$first_san" server
for node in "${nodes[@]+"${nodes[@]}"}"; do
    issue client sslclient "/O=$name/CN=$node" "nodes/$node"
done

# into place; ln refuses an existing file, so a file made meanwhile by someone else is never replaced
mkdir -p "$out/nodes"
for target in "${targets[@]}"; do
    ln "$stage/$target" "$out/$target" || die "could not create $out/$target (made meanwhile?); stopped there"
    printf 'created %s\n' "$out/$target"
done

printf '\n%s\n' "Collector ([server] in collector.toml):"
[ ${#sans[@]} -eq 0 ] || printf '  tls_cert = "%s"\n  tls_key = "%s"\n' "$out/server.pem" "$out/server.key"
printf '  client_ca = "%s"\n  require_client_auth = true\n' "$out/ca.pem"
printf '%s\n' "Each node: copy ca.pem, nodes/NODE_ID.pem and nodes/NODE_ID.key (keep it 0600) next to its agent.toml:" \
    '  [collector] tls_ca_file = "ca.pem", tls_cert_file = "NODE_ID.pem", tls_key_file = "NODE_ID.key"' \
    '  ([node] id must be NODE_ID; relative paths are relative to agent.toml)'
