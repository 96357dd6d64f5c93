#!/usr/bin/env bash
# Idempotent setup: a virtualenv in .venv with the project (and, with --dev, its test tools) installed.
# Re-runs are quick: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: Python 3.11 or newer is needed (found: $("$python" --version 2>&1))" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

stamp=".venv/.installed${extras}"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup: installing Python packages into .venv${extras:+ (with test tools)}…"
  log=.venv/setup.log
  if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -c constraints.txt -e ".${extras}"; } \
      >"$log" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -40 >&2
    echo "setup: pip install failed (full log: $log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# Front-end libraries (Leaflet) from the npm registry, served by the app itself: no CDN at run time.
npm_want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat node_modules/.installed 2>/dev/null || true)" != "$npm_want" ]; then
  command -v npm >/dev/null || { echo "setup: npm (Node.js) is needed for the map pages" >&2; exit 1; }
  echo "setup: installing front-end packages (npm ci)…"
  if ! npm ci --no-audit --no-fund >.venv/npm.log 2>&1; then
    tail -20 .venv/npm.log >&2
    echo "setup: npm ci failed (full log: .venv/npm.log)" >&2
    exit 1
  fi
  echo "$npm_want" > node_modules/.installed
fi

# Browser tests drive Debian's Chromium (no browser download at test time).
if [ -n "$extras" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Chromium for the browser tests (apt-get)…"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; } \
      >.venv/apt.log 2>&1 || { tail -20 .venv/apt.log >&2; echo "setup: installing chromium failed" >&2; exit 1; }
  else
    echo "setup: the browser tests need /usr/bin/chromium (Debian package chromium); install it as root" >&2
    exit 1
  fi
fi

# The WebRTC interop test streams from GStreamer's WHIP client (Debian simple-whip-client); without it
# (not root, no apt) that one test is skipped with the reason.
if [ -n "$extras" ] && ! command -v whip-client >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing GStreamer's WHIP client for the interop test (apt-get)…"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq simple-whip-client gstreamer1.0-plugins-good \
      gstreamer1.0-plugins-bad gstreamer1.0-nice gcc iproute2; } >.venv/apt-gst.log 2>&1 \
    || echo "setup: simple-whip-client could not be installed; its interop test will be skipped" >&2
fi

# The GB/T 28181 tests use sipp (Debian sip-tester) as the device: a real SIP peer, not a mock.
if [ -n "$extras" ] && ! command -v sipp >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing sipp for the GB/T 28181 device tests (apt-get)…"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester >.venv/apt-sipp.log 2>&1 \
    || echo "setup: sipp could not be installed; the GB/T 28181 device tests will be skipped" >&2
fi

# The metrics test has a real Prometheus (Debian prometheus) scrape the running app; without it (not root,
# no apt) that test is skipped with the reason.
if [ -n "$extras" ] && ! command -v prometheus >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing Prometheus for the metrics scrape test (apt-get)…"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >.venv/apt-prometheus.log 2>&1 \
    || echo "setup: prometheus could not be installed; the metrics scrape test will be skipped" >&2
fi

# The TURN tests relay a unit's media through coturn (Debian coturn), as units behind carrier NAT or
# UDP-blocking networks do; without it (not root, no apt) those tests are skipped with the reason.
# nftables blocks UDP in the unit's network namespace for the UDP-blocked TURN test.
if [ -n "$extras" ] && { ! command -v turnserver >/dev/null || ! command -v nft >/dev/null; } \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing coturn and nftables for the TURN tests (apt-get)…"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq coturn nftables >.venv/apt-coturn.log 2>&1 \
    || echo "setup: coturn/nftables could not be installed; the TURN tests will be skipped" >&2
fi

# The scale-out tests and benchmark put several server processes behind Debian's nginx (the same
# config/nginx/nginx.conf as docker-compose); the field-conditions test needs ethtool to switch off veth
# offloads. Without them (not root, no apt) those tests are skipped with the reason.
if [ -n "$extras" ] && { [ ! -x /usr/sbin/nginx ] || ! command -v ethtool >/dev/null; } \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing nginx and ethtool for the scale-out and field tests (apt-get)…"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light ethtool iproute2 >.venv/apt-nginx.log 2>&1 \
    || echo "setup: nginx/ethtool could not be installed; the scale-out and field tests will be skipped" >&2
fi

# The HTTPS entry point (nginx in docker-compose.yml) serves var/tls/server.crt and server.key: the court's
# certificate once it is put there; until then, a self-signed one for a first look (never replaces a pair).
if [ ! -e var/tls/server.crt ] && command -v openssl >/dev/null; then
  scripts/make_tls_cert.sh var/tls || echo "setup: no TLS certificate made; see scripts/make_tls_cert.sh" >&2
fi
