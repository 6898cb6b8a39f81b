#!/usr/bin/env bash
# Re-derive what the source and each target hold, raw, for the subscriptions of a
# renamed and a deleted folder, under a rolling pass and under `-u`
# (docs/findings/subscriptions.md shows the output of one run).
#
#   cargo build && scripts/subscriptions-evidence.sh [OUT_DIR]
#
# Runs the two bundled scenarios scenarios/basic/rename-delete-subscribed-{rolling,user}.toml
# with --keep on Cyrus 3.6.1 against the fake, the fake's sync_server personality, a
# real backupd and a real sync_server, and on Cyrus 3.10 and 3.12 (chroots, when
# installed) against the fake. Then, for every kept sandbox, it reads the storage
# itself, not IMAP:
#   - the source's subscription database: `cyr_dbtool -C CONF SUB.DB flat show`
#     (inside the chroot for 3.10/3.12);
#   - the fake: the `subscriptions` of `fake-store.json` (the store, dumped by the runner);
#   - real backupd: `sqlite3 -readonly <user>.index 'SELECT mboxname, unsubscribed FROM subscription'`;
#   - real sync_server: the replica's own sub.db with cyr_dbtool.
# Names are printed as the user sees them (3.6-3.12 key a user's sub.db by `N` +
# the folder with `\x1f` as separator; backupd stores internal names).
# Needs root (Cyrus runs as `cyrus`), jq and sqlite3. Sandboxes are removed at the
# end unless KEEP=1.
set -euo pipefail

cd "$(dirname "$0")/.."
BSIM=${BSIM:-target/debug/backupd-sim}
OUT=${1:-$(mktemp -d /tmp/subscriptions-evidence.XXXXXX)}
CYRUS_BIN=${CYRUS_BIN:-/usr/lib/cyrus/bin}
mkdir -p "$OUT"
for tool in jq sqlite3 "$BSIM" "$CYRUS_BIN/cyr_dbtool"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
SCEN=(scenarios/basic/rename-delete-subscribed-rolling.toml scenarios/basic/rename-delete-subscribed-user.toml)

runs=()
for target in fake fake-sync_server backupd sync_server; do
    runs+=("3.6 $target")
done
installed=$("$BSIM" cyrus list 2>/dev/null || true)
for v in 3.10 3.12; do
    if grep -q "^$v " <<<"$installed"; then runs+=("$v fake"); fi
done

# A user's sub.db keys (`N` + folder, `\x1f` between levels) as folder names, sorted.
subdb_names() { # ROOT CONF DB
    local root=$1 conf=$2 db=$3
    if [ "$root" = / ]; then
        "$CYRUS_BIN/cyr_dbtool" -C "$conf" "$db" flat show
    else
        chroot "$root" /usr/lib/cyrus/bin/cyr_dbtool -C "$conf" "$db" flat show
    fi | grep -av $'^\x1fVER\x1f' | cut -f1 | sed -e 's/^N//' -e $'s/\x1f/./g' | sort | paste -sd' '
}

# Internal names (user.cora.Work) as the user sees them (INBOX.Work), sorted.
user_view() { sed -e 's/^user\.cora$/INBOX/' -e 's/^user\.cora\./INBOX./' | sort | paste -sd' '; }

printf '%-5s %-17s %-35s %-40s %s\n' version target scenario "source sub.db" "target holds"
for run in "${runs[@]}"; do
    read -r version target <<<"$run"
    json="$OUT/$version-$target.json"
    if ! "$BSIM" run "${SCEN[@]}" --cyrus "$version" --target "$target" --keep \
        --json "$json" >"$OUT/$version-$target.log" 2>&1; then
        echo "($version $target: not every scenario ended as expected; see $OUT/$version-$target.log)"
    fi
    jq -r '.. | objects | select(has("sandbox") and .sandbox != null) | [.name, .verdict, .sandbox] | @tsv' "$json" |
        while IFS=$'\t' read -r name verdict sandbox; do
            root=/
            prefix=${sandbox%/tmp/backupd-sim-*} # a chroot's sandbox is in ROOT/tmp
            if [ -n "$prefix" ] && [ -x "$prefix/usr/lib/cyrus/bin/cyr_dbtool" ]; then root=$prefix; fi
            inside=${sandbox#"${root%/}"}
            db=$(find "$sandbox/source/conf/user" -name sub.db | head -1)
            src=$(subdb_names "$root" "$inside/source/etc/imapd.conf" "${db#"${root%/}"}")
            case "$target" in
                fake | fake-sync_server)
                    held="fake store: $(jq -r '.cora.subscriptions[]' "$sandbox/fake-store.json" | user_view)" ;;
                backupd)
                    index=$(find "$sandbox/target/backup" -name '*.index' | head -1)
                    held="backupd index: $(sqlite3 -readonly "$index" \
                        'SELECT mboxname FROM subscription WHERE unsubscribed IS NULL OR unsubscribed = 0' | user_view)"
                    unsub=$(sqlite3 -readonly "$index" \
                        'SELECT mboxname FROM subscription WHERE unsubscribed > 0' | user_view)
                    [ -z "$unsub" ] || held="$held (marked unsubscribed: $unsub)" ;;
                sync_server)
                    rdb=$(find "$sandbox/target/conf/user" -name sub.db | head -1)
                    held="replica sub.db: $(subdb_names / "$sandbox/target/etc/imapd.conf" "$rdb")" ;;
            esac
            printf '%-5s %-17s %-35s %-40s %s  [%s]\n' "$version" "$target" "$name" "$src" "$held" "$verdict"
            [ "${KEEP:-0}" = 1 ] || rm -rf "$sandbox"
        done
done
echo "reports and logs: $OUT"
