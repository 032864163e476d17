#!/usr/bin/env bash
# The test command: installs what is missing (scripts/install.sh), lints with ruff (rules in
# pyproject.toml), then runs the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k outbox).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PATH:/usr/sbin"   # mosquitto lives in /usr/sbin on Debian
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
