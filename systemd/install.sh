#!/usr/bin/env bash
# Install (or upgrade) posd on a terminal. Safe to run again: it reuses the virtual environment,
# upgrades the package, replaces the unit/rules files and never touches an existing config.
#
#   sudo systemd/install.sh [SOURCE]
#
# SOURCE is what pip installs: this source tree (the default) or a posd wheel file.
# Environment: PYTHON (default python3, must be >= 3.11), POSD_PREFIX (default /opt/posd).
#
# Layout on the box:
#   /opt/posd/venv                     virtual environment; the command is /opt/posd/venv/bin/posd
#   /etc/posd/posd.toml                config, root:posd 0640 (from `posd config example` if absent);
#                                      secrets it names (mac.key, api.token, TLS keys) go beside it
#   /var/lib/posd                      state: journal and its key (posd, 0700)
#   /run/posd/api.sock                 local API socket (posd:posd 0660; add the POS app's user
#                                      to group posd)
#   /etc/systemd/system/posd.service   the unit (Type=notify, watchdog, hardened)
#   /etc/udev/rules.d/99-posd.rules    /dev/posd-reader, /dev/posd-scanner
#   /etc/sysusers.d/posd.conf          user posd in dialout, plugdev, audio
#   /etc/tmpfiles.d/posd.conf          the directories above
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_spec=${1:-$(dirname "$here")}
python=${PYTHON:-python3}
prefix=${POSD_PREFIX:-/opt/posd}
venv=$prefix/venv

die() {
    echo "install.sh: $1" >&2
    exit "${2:-1}"
}

if [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: must run as root: it creates the posd user and writes to /etc and $prefix." >&2
    echo "run: sudo $0 $*" >&2
    exit 77
fi
[[ -e $source_spec ]] || die "$source_spec: no such source tree or wheel" 66
command -v "$python" >/dev/null || die "$python not found; install python3 (>= 3.11) and python3-venv" 69
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$python is older than 3.11; posd needs Python 3.11 or newer" 69

echo "== system packages"
# pyusb needs libusb at run time for USB HID scanners; Debian's minimal images lack it.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1\.0\.so'; then
    if command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q libusb-1.0-0 \
            || die "apt-get install libusb-1.0-0 failed; USB QR scanners need it" 69
    else
        echo "install.sh: libusb-1.0 is missing; install it for USB QR scanners" >&2
    fi
fi

echo "== virtual environment $venv"
if [[ ! -x $venv/bin/python ]]; then
    mkdir -p "$prefix"
    "$python" -m venv "$venv" || die "python -m venv failed; on Debian install python3-venv" 69
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$source_spec"
"$venv/bin/posd" --version

echo "== system user and directories"
install -D -m 0644 "$here/posd.sysusers" /etc/sysusers.d/posd.conf
install -D -m 0644 "$here/posd.tmpfiles" /etc/tmpfiles.d/posd.conf
if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers /etc/sysusers.d/posd.conf
else
    getent group posd >/dev/null || groupadd --system posd
    getent passwd posd >/dev/null \
        || useradd --system --gid posd --home-dir /var/lib/posd --shell /usr/sbin/nologin posd
    for group in dialout plugdev audio; do
        getent group "$group" >/dev/null || groupadd --system "$group"
        usermod -a -G "$group" posd
    done
fi
if command -v systemd-tmpfiles >/dev/null; then
    systemd-tmpfiles --create /etc/tmpfiles.d/posd.conf
else
    install -d -m 0700 -o posd -g posd /var/lib/posd
    install -d -m 0750 -o root -g posd /etc/posd
fi

echo "== config"
if [[ -e /etc/posd/posd.toml ]]; then
    echo "keeping /etc/posd/posd.toml"
else
    "$venv/bin/posd" config example >/etc/posd/posd.toml.new
    chown root:posd /etc/posd/posd.toml.new
    chmod 0640 /etc/posd/posd.toml.new
    mv /etc/posd/posd.toml.new /etc/posd/posd.toml
    echo "wrote /etc/posd/posd.toml from the example: edit it before starting posd"
fi

echo "== systemd unit and udev rules"
# The unit names /opt/posd; another POSD_PREFIX is written into the installed copy.
sed "s#/opt/posd/#$prefix/#g" "$here/posd.service" >/etc/systemd/system/posd.service.new
chmod 0644 /etc/systemd/system/posd.service.new
mv /etc/systemd/system/posd.service.new /etc/systemd/system/posd.service
[[ -f $here/../README.md ]] && install -m 0644 "$here/../README.md" "$prefix/README.md"
install -D -m 0644 "$here/99-posd.rules" /etc/udev/rules.d/99-posd.rules
if command -v udevadm >/dev/null && [[ -d /run/udev ]]; then
    udevadm control --reload-rules
    udevadm trigger --action=add --subsystem-match=tty --subsystem-match=usb --subsystem-match=hidraw
fi
if [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    systemctl enable posd.service
else
    echo "systemd is not running here: units installed, not enabled"
fi

echo "== check"
if "$venv/bin/posd" config check /etc/posd/posd.toml; then
    echo "config is valid: start with  systemctl restart posd  and follow  journalctl -u posd -f"
else
    echo "fix the problems above, then: posd config check && systemctl restart posd"
fi
