#!/usr/bin/env bash
# Set up and run the command centre on the embedded default (SQLite + in-process bus), with simulated
# field units around Harbin and the 18 simulated partner agencies (and a demo judge with a case) for a
# first look.
# Usage: ./run.sh [--port N] [--host ADDR]      CC_DEMO=0 ./run.sh runs without the simulations.
# Settings: config/settings.sample.toml and CC_* environment variables (see README).
set -euo pipefail
cd "$(dirname "$0")"
# A terminal reads text lines; production's default is JSON lines for a log collector (README, Observability).
export CC_OBSERVABILITY__LOG_FORMAT="${CC_OBSERVABILITY__LOG_FORMAT:-text}"
bash scripts/setup.sh
.venv/bin/python -m command_center init

port=8080
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--port" ] && port="${args[$((i + 1))]}"
done

if [ "${CC_DEMO:-1}" = "0" ]; then
  exec .venv/bin/python -m command_center serve "$@"
fi

.venv/bin/python -m command_center demo
# GB/T 28181 devices beside the WebRTC ones: the SIP registrar on loopback only, for the simulated cameras.
export CC_GB28181__ENABLED="${CC_GB28181__ENABLED:-true}" CC_GB28181__SIP_HOST="${CC_GB28181__SIP_HOST:-127.0.0.1}"
export CC_GB28181__SIP_PORT="${CC_GB28181__SIP_PORT:-15060}"
echo "demo: the 18 partner agencies are simulated on 127.0.0.1:9101-9118 (python -m simulators.agencies)"
.venv/bin/python -m simulators.agencies >var/agency-simulator.log 2>&1 &
agencies=$!
.venv/bin/python -m command_center serve "$@" &
server=$!
trap 'kill $server ${simulator:-} ${gb_devices:-} $agencies 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 60); do
  curl -sf "http://127.0.0.1:${port}/api/health" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || exit 1
  sleep 0.5
done
echo "demo: 20 simulated field units report around Harbin (python -m simulators.units); CC_DEMO=0 turns them off"
.venv/bin/python -m simulators.units --url "http://127.0.0.1:${port}" --units 20 --register --report-every 60 &
simulator=$!
echo "demo: 3 GB/T 28181 body cameras register over SIP on 127.0.0.1:${CC_GB28181__SIP_PORT} and walk; HLJ0102-G01 has video (python -m simulators.gb28181)"
.venv/bin/python -m simulators.gb28181 --url "http://127.0.0.1:${port}" --sip "127.0.0.1:${CC_GB28181__SIP_PORT}" \
  --devices 3 --video 1 --register >var/gb-simulator.log 2>&1 &
gb_devices=$!
wait "$server"
