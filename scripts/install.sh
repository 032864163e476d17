#!/usr/bin/env bash
# Installs what the project needs on Debian 12 (or Raspberry Pi OS bookworm):
# system packages when run as root (or with sudo available), then a virtual
# environment in .venv with the project in editable mode.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3-venv python3-dev mosquitto mosquitto-clients ffmpeg chromium nginx libnginx-mod-rtmp fonts-dejavu-core)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install: apt packages missing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian starts these as system services on install; the project runs its own
  # private instances on loopback ports, so the system-wide ones are not needed.
  for svc in mosquitto nginx; do
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "install: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "install: installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  # face-recognition declares `dlib` (a long source build); dlib-bin, pulled in
  # by pyproject.toml, already provides the module, so skip its dependencies.
  .venv/bin/pip install -q --no-deps 'face-recognition==1.3.0'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
echo "install: ready (.venv/bin/hall)"
