#!/usr/bin/env bash
# Makes sure the system tools the tests talk to exist: mosquitto (MQTT broker)
# and aplay (alsa-utils). Installs them with apt-get when missing and root.
set -euo pipefail
missing=()
command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto)
command -v aplay >/dev/null 2>&1 || missing+=(alsa-utils)
# systemd-analyze, -sysusers and -tmpfiles check the shipped unit files.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
((${#missing[@]})) || exit 0
if [[ $(id -u) -ne 0 ]]; then
    echo "posd tests need these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 69
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "posd tests need: ${missing[*]}, and this machine has no apt-get; install them by hand" >&2
    exit 69
fi
echo "installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}"; }
