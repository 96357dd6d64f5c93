#!/usr/bin/env bash
# A self-signed TLS certificate for a first look at the HTTPS entry point (nginx, config/nginx/nginx.conf).
# In service, put the court's own certificate (full chain) and key in the same two files instead; this script
# never replaces files that exist.
#
#   scripts/make_tls_cert.sh [DIR] [NAME...]
#
# DIR defaults to var/tls (what docker-compose.yml mounts into nginx); it gets server.crt and server.key
# (readable by its owner only). NAMEs are the host names and IP addresses browsers will use to reach this
# machine (default: localhost, 127.0.0.1 and this host's name). Browsers warn about a self-signed
# certificate until it is imported on the consoles (or replaced by the court's).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${1:-var/tls}
[ $# -gt 0 ] && shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(localhost 127.0.0.1 "$(hostname)")

if [ -e "$dir/server.crt" ] || [ -e "$dir/server.key" ]; then
  echo "make_tls_cert: $dir/server.crt or server.key exists; left as it is" >&2
  exit 0
fi
command -v openssl >/dev/null || { echo "make_tls_cert: openssl is needed (Debian package openssl)" >&2; exit 1; }

san=""
for name in "${names[@]}"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+="IP:$name,"; else san+="DNS:$name,"; fi
done
mkdir -p "$dir"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 -days 825 -nodes \
  -keyout "$dir/server.key" -out "$dir/server.crt" -subj "/O=执行指挥中心/CN=${names[0]}" -utf8 \
  -addext "subjectAltName=${san%,}" -addext "basicConstraints=critical,CA:FALSE" \
  -addext "keyUsage=critical,digitalSignature" -addext "extendedKeyUsage=serverAuth" 2>/dev/null
chmod 644 "$dir/server.crt"
echo "make_tls_cert: wrote $dir/server.crt and $dir/server.key for ${names[*]} (self-signed, 825 days)"
