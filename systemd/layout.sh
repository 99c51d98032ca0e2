# posd's layout on a box, said once: sourced by install.sh, which lays it down, and by
# uninstall.sh, which removes it (install.sh copies both scripts and this file to $POSD_PREFIX).
# Every path is under $R: "" for this machine, the root directory given with --root otherwise.
#
#   $prefix/venv                         virtual environment; the command is $prefix/venv/bin/posd
#   $prefix/README.md, uninstall.sh, layout.sh
#   /usr/local/bin/posd                  symlink to $prefix/venv/bin/posd (the technician's `posd`)
#   /etc/posd/                           root:posd 0750; posd.toml root:posd 0640 (written from
#                                        `posd config example` only if absent), and the secrets
#                                        it names (mac.key, terminal.key, ...) beside it
#   /var/lib/posd/                       posd:posd 0700: journal.db, journal.key
#   /run/posd/                           posd:posd 0750: api.sock (systemd makes it at start)
#   /etc/systemd/system/posd.service     the unit, enabled for multi-user.target
#   /etc/udev/rules.d/99-posd.rules      known reader and scanner models (replaced on upgrade)
#   /etc/udev/rules.d/98-posd-local.rules  this shop's own devices (written once, then left)
#   /etc/sysusers.d/posd.conf            user posd in groups dialout, plugdev, audio
#   /etc/tmpfiles.d/posd.conf            the three directories above
# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this

prefix=${POSD_PREFIX:-/opt/posd}
venv=$prefix/venv
command_link=/usr/local/bin/posd
config_dir=/etc/posd
config=$config_dir/posd.toml
state_dir=/var/lib/posd
runtime_dir=/run/posd
unit=/etc/systemd/system/posd.service
rules=/etc/udev/rules.d/99-posd.rules
local_rules=/etc/udev/rules.d/98-posd-local.rules
sysusers=/etc/sysusers.d/posd.conf
tmpfiles=/etc/tmpfiles.d/posd.conf
R=""

die() {
    echo "${0##*/}: $1" >&2
    exit "${2:-1}"
}

# --root DIR: DIR is the root file system the box will boot (an image, a chroot, a mounted disk).
set_root() {
    [[ -n $1 ]] || die "--root needs a directory" 64
    [[ -d $1 ]] || die "--root $1: no such directory" 66
    R=$(cd "$1" && pwd -P)
    [[ $R == / ]] && R=""
    return 0
}

check_prefix() {
    [[ $prefix == /?* && $prefix != */ && $prefix != *..* ]] \
        || die "POSD_PREFIX=$prefix: expected an absolute directory such as /opt/posd" 64
}

# This machine is the root and systemd runs it: services and udev can be told.
live_systemd() {
    [[ -z $R && -d /run/systemd/system ]]
}

# posd's numeric group id in the target root's /etc/group (not this machine's, under --root).
posd_gid() {
    local gid
    gid=$(awk -F: '$1 == "posd" { print $3; exit }' "$R/etc/group" 2>/dev/null)
    [[ -n $gid ]] || die "no group posd in $R/etc/group: the user step failed" 70
    echo "$gid"
}

need_root() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "${0##*/}: must run as root: $1" >&2
        echo "run: sudo $0 ${*:2}" >&2
        exit 77
    fi
}
