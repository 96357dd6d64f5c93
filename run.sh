#!/usr/bin/env bash
# Set up and run the command centre on the embedded default (SQLite + in-process bus).
# Usage: ./run.sh [--port N] [--host ADDR]     Settings: config/settings.sample.toml, CC_* variables.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
.venv/bin/python -m command_center init
exec .venv/bin/python -m command_center serve "$@"
