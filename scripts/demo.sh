#!/usr/bin/env bash
# The run command: installs what is missing (scripts/install.sh), then starts the whole
# system locally — Mosquitto, central and one simulated kiosk — until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PATH:/usr/sbin"
exec .venv/bin/hall demo "$@"
