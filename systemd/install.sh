#!/usr/bin/env bash
# Install or upgrade posd on a POS box, or into a root file system for one.
#
#   sudo systemd/install.sh [--root DIR] [--wheelhouse DIR] [SOURCE]
#   make install [DESTDIR=DIR] [WHEELHOUSE=DIR]           (the same; DESTDIR is --root)
#
# SOURCE        what pip installs: this source tree (the default) or a posd wheel file
# --root DIR    install into DIR, the root the box will boot (an image, a chroot, a mounted
#               disk): users, groups and directories go into DIR's /etc/passwd and friends, the
#               unit is enabled there; nothing of this machine is touched
# --wheelhouse DIR  take posd's dependencies (and posd, if SOURCE is a wheel) from DIR's wheel
#               files only, never from an index: for a shop without internet (make one with
#               `pip wheel --wheel-dir DIR .` on a machine that has it)
# Environment:  PYTHON (the interpreter the venv is made from, >= 3.11; default python3, and
#               /usr/bin/python3 with --root), POSD_PREFIX (default /opt/posd)
#
# Run it again to upgrade: the venv is reused (made anew if its Python changed), posd is
# reinstalled even at the same version, unit and 99-posd.rules are replaced; the config, the
# secrets, the state (journal) and 98-posd-local.rules are never touched. It says "upgraded
# posd X → Y". Layout: systemd/layout.sh. Removal: uninstall.sh (copied to $POSD_PREFIX).
set -euo pipefail
# Whatever the caller's umask (sudo keeps it): a 0700 /opt/posd would lock the posd user out.
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=systemd/layout.sh
source "$here/layout.sh"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    exit "${1:-0}"
}

source_spec=""
wheelhouse=""
args=("$@")
while (($#)); do
    case $1 in
        --root) set_root "${2:-}"; shift 2 ;;
        --root=*) set_root "${1#--root=}"; shift ;;
        --wheelhouse) [[ -n ${2:-} ]] || die "--wheelhouse needs a directory" 64
            wheelhouse=$2; shift 2 ;;
        --wheelhouse=*) wheelhouse=${1#--wheelhouse=}; shift ;;
        -h | --help) usage ;;
        -*) echo "install.sh: unknown option $1" >&2; usage 64 >&2 ;;
        *) [[ -z $source_spec ]] || usage 64 >&2; source_spec=$1; shift ;;
    esac
done
need_root "it creates the posd user, sets file owners and writes to ${R:-}/etc and ${R:-}$prefix." \
    "${args[@]}"
check_prefix
source_spec=${source_spec:-$(dirname "$here")}
[[ -e $source_spec ]] || die "$source_spec: no such source tree or wheel" 66
if [[ -n $wheelhouse ]]; then
    [[ -d $wheelhouse ]] || die "--wheelhouse $wheelhouse: no such directory" 66
    wheelhouse=$(cd "$wheelhouse" && pwd)
    pip_index=(--no-index --find-links "$wheelhouse")
else
    pip_index=()
fi
if [[ -n ${PYTHON:-} ]]; then
    python=$PYTHON
elif [[ -n $R && -x /usr/bin/python3 ]]; then
    python=/usr/bin/python3
else
    python=python3
fi
command -v "$python" >/dev/null || die "$python not found; install python3 (>= 3.11) and python3-venv" 69
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$python is older than 3.11; posd needs Python 3.11 or newer" 69
base=$("$python" -c 'import os, sys; print(os.path.realpath(sys._base_executable))')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip() {
    "$R$venv/bin/python" -m pip --disable-pip-version-check --quiet "$@"
}

installed_version() {
    "$R$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("posd"))' 2>/dev/null
}

old_version=""
if [[ -x $R$venv/bin/python ]]; then
    old_version=$(installed_version) || old_version=""
fi
if [[ -n $old_version ]]; then
    echo "upgrading posd $old_version in ${R:-/}"
else
    echo "installing posd into ${R:-/}"
fi

echo "== system packages"
# pyusb needs libusb at run time for USB HID scanners; Debian's minimal images lack it.
if [[ -n $R ]]; then
    compgen -G "$R/usr/lib/*/libusb-1.0.so.0" >/dev/null \
        || echo "note: $R has no libusb-1.0; USB QR scanners need it (Debian: libusb-1.0-0)"
elif ! ldconfig -p 2>/dev/null | grep -q 'libusb-1\.0\.so'; then
    if command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q libusb-1.0-0 \
            || die "apt-get install libusb-1.0-0 failed; USB QR scanners need it" 69
    else
        echo "note: libusb-1.0 is missing; install it for USB QR scanners"
    fi
fi

echo "== system user and directories"
install -D -m 0644 "$here/posd.sysusers" "$R$sysusers"
install -D -m 0644 "$here/posd.tmpfiles" "$R$tmpfiles"
if command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null; then
    systemd-sysusers ${R:+--root "$R"} "$R$sysusers"
    systemd-tmpfiles ${R:+--root "$R"} --create "$R$tmpfiles"
elif [[ -n $R ]]; then
    die "--root needs systemd-sysusers and systemd-tmpfiles (Debian: apt-get install systemd)" 69
else
    getent group posd >/dev/null || groupadd --system posd
    getent passwd posd >/dev/null \
        || useradd --system --gid posd --home-dir "$state_dir" --shell /usr/sbin/nologin posd
    for group in dialout plugdev audio; do
        getent group "$group" >/dev/null || groupadd --system "$group"
        usermod -a -G "$group" posd
    done
    install -d -m 0700 -o posd -g posd "$state_dir"
    install -d -m 0750 -o root -g posd "$config_dir"
fi
gid=$(posd_gid)

echo "== virtual environment $R$venv on $base"
# pyvenv.cfg's executable= is the interpreter the venv was made from; another one (or a venv
# that no longer runs, its Python removed by a dist-upgrade) means making it anew.
made_from=$(sed -n 's/^executable = //p' "$R$venv/pyvenv.cfg" 2>/dev/null) || made_from=""
if [[ $made_from != "$base" ]] || ! "$R$venv/bin/python" -c '' 2>/dev/null; then
    [[ -e $R$venv ]] && echo "the venv was made from ${made_from:-an unknown Python}: making it anew"
    mkdir -p "$R$prefix"
    "$python" -m venv --clear "$R$venv" || die "python -m venv failed; on Debian install python3-venv" 69
fi
if [[ -n $R && ! -e $R$base ]]; then
    # A venv is tied to the interpreter it was made from by absolute path (pyvenv.cfg home=,
    # bin/python3): that one must be in the root, at the same path, when the root boots.
    echo "note: $R has no $base yet; the venv runs on it once $R is the root"
fi
wheel=$source_spec
if [[ -d $source_spec ]]; then
    pip wheel --no-deps --wheel-dir "$tmp" "${pip_index[@]}" "$source_spec" \
        || die "building posd from $source_spec failed (with --wheelhouse: give a posd wheel as SOURCE)" 69
    wheel=$(echo "$tmp"/posd-*.whl)
fi
# Under --root nothing is compiled at install time: the .pyc would name DIR's paths.
compile=()
[[ -n $R ]] && compile=(--no-compile)
pip install "${compile[@]}" "${pip_index[@]}" "$wheel" || die "pip install $wheel failed" 69
new_version=$(installed_version) || die "posd is not importable in $R$venv after pip install" 70
if [[ $new_version == "$old_version" ]]; then
    # pip leaves an installed version alone; an upgrade from a changed tree must still land.
    pip install "${compile[@]}" --force-reinstall --no-deps "${pip_index[@]}" "$wheel" \
        || die "pip install --force-reinstall $wheel failed" 69
fi
if [[ -n $R ]]; then
    # The venv must run both here, as $R$venv, and as $venv once $R is the root: console
    # scripts get a shebang that finds python beside the script, activate names $venv, and
    # the bytecode (precompiled: /opt is read-only to the service) names the final paths.
    for script in "$R$venv"/bin/*; do
        [[ -f $script && ! -L $script ]] || continue
        first=$(head -n 1 "$script")
        second=$(sed -n 2p "$script")
        if [[ $first == "#!$R$venv/bin/python"* ]]; then
            skip=2
        elif [[ $first == "#!/bin/sh" && ($second == "'''exec' $R$venv/bin/python"* ||
            $second == "'''exec' \"$R$venv/bin/python"*) ]]; then
            skip=4 # pip's own /bin/sh form, for a long or spaced path
        else
            continue
        fi
        {
            echo '#!/bin/sh'
            # shellcheck disable=SC2016
            echo "'''exec' \"\$(dirname -- \"\$(readlink -f -- \"\$0\")\")/python\" \"\$0\" \"\$@\""
            echo "' '''"
            tail -n +"$skip" "$script"
        } >"$script.new"
        chmod --reference="$script" "$script.new"
        mv "$script.new" "$script"
    done
    sed -i "s#$R$venv#$venv#g" "$R$venv"/bin/activate* "$R$venv/pyvenv.cfg"
    # Like pip's own compile step, a file that does not compile is skipped, not fatal.
    "$R$venv/bin/python" -m compileall -qq -j 0 -s "$R" -p / "$R$venv/lib" \
        || echo "note: some files in the venv did not compile; Python compiles them in memory when used"
fi
"$R$venv/bin/posd" --version

echo "== config"
if [[ -e $R$config ]]; then
    echo "keeping $R$config"
else
    "$R$venv/bin/posd" config example >"$R$config.new"
    chown "0:$gid" "$R$config.new"
    chmod 0640 "$R$config.new"
    mv "$R$config.new" "$R$config"
    echo "wrote $R$config from the example: edit it before starting posd"
fi

echo "== systemd unit, udev rules"
# The unit names /opt/posd; another POSD_PREFIX is written into the installed copy.
mkdir -p "$(dirname "$R$unit")"
sed "s#/opt/posd/#$prefix/#g" "$here/posd.service" >"$R$unit.new"
chmod 0644 "$R$unit.new"
mv "$R$unit.new" "$R$unit"
install -D -m 0644 "$here/99-posd.rules" "$R$rules"
if [[ -e $R$local_rules ]]; then
    echo "keeping $R$local_rules"
else
    install -D -m 0644 "$here/98-posd-local.rules" "$R$local_rules"
fi
if [[ -f $here/../README.md ]]; then
    install -m 0644 "$here/../README.md" "$R$prefix/README.md"
fi
install -m 0755 "$here/uninstall.sh" "$R$prefix/uninstall.sh"
install -m 0644 "$here/layout.sh" "$R$prefix/layout.sh"
if [[ -L $R$command_link || ! -e $R$command_link ]]; then
    mkdir -p "$(dirname "$R$command_link")"
    ln -sfn "$venv/bin/posd" "$R$command_link"
else
    echo "note: $R$command_link is not posd's link, left as it is: the command is $venv/bin/posd"
fi

was_active=no
if live_systemd; then
    systemctl is-active --quiet posd.service && was_active=yes
    systemctl daemon-reload
    systemctl enable --quiet posd.service
else
    systemctl --root="${R:-/}" enable --quiet posd.service 2>/dev/null \
        || echo "note: could not enable posd.service (no systemctl?): enable it on the box"
fi
if [[ -z $R ]] && command -v udevadm >/dev/null && [[ -d /run/udev ]]; then
    udevadm control --reload-rules
    udevadm trigger --action=add --subsystem-match=tty --subsystem-match=usb --subsystem-match=hidraw
fi

echo "== check"
if [[ -n $R ]]; then
    echo "the config names files of the booted root: check it there with  posd config check"
elif "$R$venv/bin/posd" config check "$config"; then
    if [[ $was_active == yes ]]; then
        systemctl try-restart posd.service
        echo "restarted posd on the new version: journalctl -u posd -f"
    else
        echo "config is valid: start with  systemctl start posd  and follow  journalctl -u posd -f"
    fi
else
    echo "fix the problems above, then: posd config check && systemctl restart posd"
fi
if [[ -n $old_version ]]; then
    echo "upgraded posd $old_version → $new_version in ${R:-/}"
else
    echo "installed posd $new_version into ${R:-/}"
fi
