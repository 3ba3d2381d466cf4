#!/usr/bin/env bash
# Install the system tools the tests and the demo use (the C compiler for the fake libnvidia-ml, jq and OpenSSL
# for the regulator's verification recipe, systemd-analyze/-sysusers/-tmpfiles for the deploy/systemd checks, chromium
# and its WebDriver for the dashboard's browser tests) when they are missing, promtool (package prometheus) for the
# alerting rules, from Debian's packages.
set -euo pipefail
missing=()
command -v cc >/dev/null || missing+=(gcc libc6-dev)
command -v jq >/dev/null || missing+=(jq)
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v promtool >/dev/null || missing+=(prometheus)
for tool in systemd-analyze systemd-sysusers systemd-tmpfiles; do
  command -v "$tool" >/dev/null || { missing+=(systemd); break; }
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing tools: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
