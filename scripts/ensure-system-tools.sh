#!/usr/bin/env bash
# Makes sure the system tools the tests talk to exist: mosquitto (MQTT broker)
# and aplay (alsa-utils), and systemd-analyze (systemd, checks the shipped unit
# files; those tests skip without it). Installs what is missing with apt-get
# when root.
set -euo pipefail
missing=()
command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto)
command -v aplay >/dev/null 2>&1 || missing+=(alsa-utils)
optional=()
command -v systemd-analyze >/dev/null 2>&1 || optional+=(systemd)
((${#missing[@]} + ${#optional[@]})) || exit 0
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    if ((${#optional[@]})); then
        echo "note: without ${optional[*]} the systemd unit checks are skipped" >&2
    fi
    ((${#missing[@]})) || exit 0
    echo "posd tests need these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 69
fi
all=("${missing[@]}" "${optional[@]}")
echo "installing ${all[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${all[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${all[@]}"; }
