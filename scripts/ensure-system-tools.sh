#!/usr/bin/env bash
# Makes sure the system tools the tests talk to exist: mosquitto (MQTT broker),
# aplay (alsa-utils), chromium (the fleet console's page, driven headless by
# Playwright), and systemd-analyze (systemd, checks the shipped unit files;
# those tests skip without it) and a Korean font (fonts-nanum: without one the
# console's screenshots show boxes for Hangul; the tests read the DOM, not
# pixels). Installs what is missing with apt-get when root.
# `ensure-system-tools.sh demo`: only what `posd demo` needs (mosquitto, aplay).
set -euo pipefail
missing=()
command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto)
command -v aplay >/dev/null 2>&1 || missing+=(alsa-utils)
optional=()
if [[ ${1:-} != demo ]]; then
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    command -v systemd-analyze >/dev/null 2>&1 || optional+=(systemd)
    [[ -n $(fc-list :lang=ko 2>/dev/null | head -n 1) ]] || optional+=(fonts-nanum)
fi
((${#missing[@]} + ${#optional[@]})) || exit 0
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    for package in "${optional[@]}"; do
        case $package in
            systemd) echo "note: without systemd the systemd unit checks are skipped" >&2 ;;
            fonts-nanum) echo "note: without a Korean font screenshots show Hangul as boxes" >&2 ;;
        esac
    done
    ((${#missing[@]})) || exit 0
    echo "posd ${1:-tests} need these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 69
fi
all=("${missing[@]}" "${optional[@]}")
echo "installing ${all[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${all[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${all[@]}"; }
