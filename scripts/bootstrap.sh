#!/usr/bin/env bash
# Shared by scripts/demo and scripts/test: make a fresh clone usable on Debian 12 with Docker.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "installing debootstrap (builds the base image with no registry)" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq debootstrap >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv" >&2
    python3 -m venv .venv
fi
# editable install: the workspace mounts this checkout's code into the nodes
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
