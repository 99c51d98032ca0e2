#!/usr/bin/env bash
# Creates the project's virtual environment. Debian ships venv separately
# (python3-venv); install it when missing and root.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}
if "$python" -m venv "$venv" 2>/dev/null; then exit 0; fi
rm -rf "$venv"
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing python3-venv with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q python3-venv >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q python3-venv; }
    exec "$python" -m venv "$venv"
fi
echo "cannot create $venv: install python3-venv (sudo apt-get install python3-venv)" >&2
exit 69
