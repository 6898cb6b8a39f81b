#!/usr/bin/env bash
# Install the Debian 12 Cyrus packages backupd-sim drives, when they are missing.
#
#   scripts/install-cyrus.sh            install if /usr/lib/cyrus/bin/sync_client is absent
#   CYRUS_BIN=/some/dir scripts/...     only check that DIR holds the binaries; install nothing
#   CYRUS_PREFIX=/some/prefix scripts/... only check the installed tree (libexec/, sbin/, bin/, ...)
#
# The packages are cyrus-common (master, backupd, ctl_backups, ...), cyrus-imapd
# (imapd) and cyrus-replication (sync_client, sync_server). A policy-rc.d that
# refuses every service start is in place during the install, so the system
# cyrus service never starts on the standard ports; it is removed afterwards
# unless it was already there.
set -euo pipefail

# What every run needs; the Debian install also brings the real servers used
# for side-by-side runs, so check those there too.
need=(master imapd sync_client ctl_cyrusdb)

if [ -n "${CYRUS_PREFIX:-}" ]; then
    if [ -n "${CYRUS_BIN:-}" ]; then
        echo "cyrus: both CYRUS_PREFIX and CYRUS_BIN are set: unset one" >&2
        exit 2
    fi
    # The directories backupd-sim searches below a prefix, in its order
    # (src/cyrus/mod.rs PREFIX_DIRS).
    for b in "${need[@]}"; do
        found=
        for d in libexec sbin bin libexec/cyrus-imapd lib/cyrus/bin; do
            if [ -x "$CYRUS_PREFIX/$d/$b" ]; then found=$d; break; fi
        done
        if [ -z "$found" ]; then
            echo "cyrus: CYRUS_PREFIX=$CYRUS_PREFIX has no $b in libexec/, sbin/, bin/, libexec/cyrus-imapd/ or lib/cyrus/bin/ (nothing is installed for a prefix)" >&2
            exit 2
        fi
    done
    if ! getent passwd cyrus >/dev/null; then
        echo "cyrus: no 'cyrus' user (Cyrus drops privileges to it); 'make setup' without CYRUS_PREFIX creates it" >&2
        exit 2
    fi
    echo "cyrus: found the installed tree $CYRUS_PREFIX"
    exit 0
fi

BIN=${CYRUS_BIN:-/usr/lib/cyrus/bin}
[ "$BIN" = /usr/lib/cyrus/bin ] && need+=(sync_server backupd ctl_backups)

have_all() {
    local b
    for b in "${need[@]}"; do [ -x "$BIN/$b" ] || return 1; done
    getent passwd cyrus >/dev/null || return 1
    # sqlite3 reads a real backupd's index (side-by-side runs and make bench).
    [ "$BIN" != /usr/lib/cyrus/bin ] || command -v sqlite3 >/dev/null
}

if have_all; then
    echo "cyrus: found in $BIN"
    exit 0
fi
if [ "$BIN" != /usr/lib/cyrus/bin ]; then
    echo "cyrus: $BIN lacks one of: ${need[*]} (CYRUS_BIN points at a build; nothing is installed for it)" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "cyrus: not installed, and installing needs root: run 'sudo make setup'" >&2
    exit 2
fi

echo "cyrus: installing cyrus-common cyrus-imapd cyrus-replication sqlite3 with apt-get ..."
prc=/usr/sbin/policy-rc.d
own_prc=0
if [ ! -e "$prc" ]; then
    printf '#!/bin/sh\n# added by backupd-sim install-cyrus.sh: no service starts during install\nexit 101\n' > "$prc"
    chmod 755 "$prc"
    own_prc=1
fi
cleanup() { if [ "$own_prc" = 1 ]; then rm -f "$prc"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends cyrus-common cyrus-imapd cyrus-replication sqlite3

# hyperfine is only for `make bench`; not required here.
if have_all; then
    echo "cyrus: installed in $BIN ($(dpkg-query -W -f='${Version}' cyrus-common))"
else
    echo "cyrus: install finished but $BIN still lacks one of: ${need[*]}" >&2
    exit 1
fi
