#!/usr/bin/env bash
# Remove posd from a POS box, or from a root file system made with install.sh --root.
#
#   sudo /opt/posd/uninstall.sh [--root DIR] [--purge]      (or systemd/uninstall.sh)
#
# Stops and disables the service; removes the unit, 99-posd.rules, the sysusers and tmpfiles
# entries, $POSD_PREFIX (venv, README, this script) and the /usr/local/bin/posd link. Keeps, unless --purge: /etc/posd (config
# and secrets), /var/lib/posd (the journal: payments not yet forwarded to the ledger live there;
# `posd saf` lists them) and 98-posd-local.rules. --purge deletes those too. The system user
# posd and its groups always stay (Debian practice: a uid that owned files is not handed out
# again); `userdel posd` removes it. Safe to run twice.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=systemd/layout.sh
source "$here/layout.sh"

purge=no
args=("$@")
while (($#)); do
    case $1 in
        --root) set_root "${2:-}"; shift 2 ;;
        --root=*) set_root "${1#--root=}"; shift ;;
        --purge) purge=yes; shift ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" 64 ;;
    esac
done
need_root "it removes system files from ${R:-}/etc and ${R:-}$prefix." "${args[@]}"
check_prefix

removed=()
remove() {
    local path
    for path in "$@"; do
        [[ $path == /?* ]] || die "refusing to remove '$path'" 70
        if [[ -e $R$path || -L $R$path ]]; then
            rm -rf -- "$R$path"
            removed+=("$R$path")
        fi
    done
}

echo "== service"
if live_systemd; then
    systemctl disable --now --quiet posd.service 2>/dev/null || true
elif [[ -e $R$unit ]]; then
    systemctl --root="${R:-/}" disable --quiet posd.service 2>/dev/null || true
fi
remove "$unit" "$rules" "$sysusers" "$tmpfiles" "$prefix"
if [[ -L $R$command_link && $(readlink "$R$command_link") == "$venv/bin/posd" ]]; then
    remove "$command_link"
fi
if [[ $purge == yes ]]; then
    remove "$config_dir" "$state_dir" "$runtime_dir" "$local_rules"
fi
if live_systemd; then
    systemctl daemon-reload
fi
if [[ -z $R ]] && command -v udevadm >/dev/null && [[ -d /run/udev ]]; then
    udevadm control --reload-rules
fi

if ((${#removed[@]})); then
    printf 'removed %s\n' "${removed[@]}"
else
    echo "nothing of posd to remove in ${R:-/}"
fi
if [[ $purge == no ]]; then
    for path in "$config_dir" "$state_dir" "$local_rules"; do
        [[ -e $R$path ]] && echo "kept $R$path (--purge removes it)"
    done
fi
if [[ -n $(awk -F: '$1 == "posd"' "$R/etc/passwd" 2>/dev/null) ]]; then
    echo "kept the system user posd (userdel posd removes it)"
fi
exit 0
