#!/usr/bin/env bash
# make soak: the bundled suite's convergence scenarios (those expecting
# `converged = true`) run SOAK_RUNS times against the correct fake, where every
# run must pass (no false failure), then SOAK_RUNS times with a `lie` or
# `hide-missing` fault injected, where every run must be caught (exit 1, with
# the lost message named). Run k uses scenario k mod N and seed SOAK_SEED+k;
# every failing run prints its replay command and keeps its sandbox.
#
#   SOAK_RUNS=1000     runs per phase
#   SOAK_PHASE=both    correct | faulty | both
#   SOAK_SEED=<now>    first seed (printed)
#   BIN=target/release/backupd-sim   CYRUS_BIN=/usr/lib/cyrus/bin
#
# After each run it also checks that no process of the run's sandbox is left.
# Exit 0 only when every correct run passed, every faulty run was caught and
# nothing leaked.
set -u
cd "$(dirname "$0")/.."

RUNS=${SOAK_RUNS:-1000}
PHASE=${SOAK_PHASE:-both}
SEED0=${SOAK_SEED:-$(date +%s)}
BIN=${BIN:-target/release/backupd-sim}
CYRUS_BIN=${CYRUS_BIN:-/usr/lib/cyrus/bin}

[ -x "$BIN" ] || { echo "soak: $BIN missing (make build)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/backupd-sim-soak-XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/sandboxes" "$WORK/faulty" "$WORK/logs"
chmod 755 "$WORK/sandboxes"
echo "soak: $RUNS run(s) per phase ($PHASE), seeds from $SEED0, work dir $WORK"

mapfile -t CORRECT < <(grep -l '^converged = true' scenarios/*/*.toml | sort)
# Faults that lose messages only show where messages are sent after the first
# step: the convergence scenarios that append.
mapfile -t APPENDING < <(grep -l 'append = {' "${CORRECT[@]}" | sort)
[ ${#CORRECT[@]} -gt 0 ] || { echo "soak: no convergence scenario found" >&2; exit 2; }

# Where the real client legitimately heals the injected loss, no run can be
# "caught": the scenario leaves work for the final catch-up (a lock window that
# defers the pass, a stall past sync_timeout), the catch-up runs with faults
# cleared, the client sends APPLY RESERVE again, the fake reports the lost GUIDs
# MISSING and the client uploads them, so the backup really converges.
SKIP=${SOAK_FAULTY_SKIP:-stall-past-sync-timeout b-deferred-sub-keeps-log-run ends-mid-batch}

# Faulty copies: the first step becomes a fault step (as tests/it/runner.rs does).
FAULTY=()
for s in "${APPENDING[@]}"; do
    name=$(basename "$s" .toml)
    case " $SKIP " in *" $name "*) continue ;; esac
    for kind in lie hide-missing; do
        case $kind in
        # On every match, not just the first: the real client heals a one-off
        # loss whenever it re-sends APPLY RESERVE for the same GUIDs (e.g. after
        # a rename or a lock retry), and then the backup legitimately converges.
        lie) fault='fault = { name = "soak-lie", when = { verb = "APPLY MESSAGE" }, action = "lie" }' ;;
        hide-missing) fault='fault = { name = "soak-hide", when = { verb = "APPLY RESERVE" }, action = "hide-missing", count = 1 }' ;;
        esac
        out="$WORK/faulty/$name-$kind.toml"
        awk -v f="$fault" 'done == 0 && /^\[\[step\]\]$/ { print; print f; print "[[step]]"; done = 1; next } { print }' "$s" > "$out"
        FAULTY+=("$out")
    done
done

leaks=0
# No process may still name the sandbox dir. The pattern ends in `[s]` so that
# grep's own command line does not match it (the path is mktemp's: no specials).
leak_pattern="$WORK/sandboxe[s]"
check_leaks() {
    local left
    left=$(grep -l -a "$leak_pattern" /proc/[0-9]*/cmdline 2>/dev/null || true)
    if [ -n "$left" ]; then
        sleep 1
        left=$(grep -l -a "$leak_pattern" /proc/[0-9]*/cmdline 2>/dev/null || true)
    fi
    if [ -n "$left" ]; then
        leaks=$((leaks + 1))
        echo "  LEAK after $1: $(echo "$left" | tr '\n' ' ')"
    fi
}

# phase NAME EXPECT SCENARIOS...: EXPECT is pass (exit 0) or caught (exit 1 and a lost message named).
phase() {
    local name=$1 expect=$2
    shift 2
    local list=("$@") n=$# ok=0 bad=0 start end t0 t1 i s seed rc log
    start=$(date +%s.%N)
    echo "== $name: $RUNS run(s) over ${#list[@]} scenario(s), expecting: $expect"
    for ((i = 0; i < RUNS; i++)); do
        s=${list[$((i % n))]}
        seed=$((SEED0 + i))
        log="$WORK/logs/$name-$i.log"
        t0=$(date +%s.%N)
        "$BIN" run "$s" --seed "$seed" --sandbox-dir "$WORK/sandboxes" --cyrus-bin "$CYRUS_BIN" > "$log" 2>&1
        rc=$?
        t1=$(date +%s.%N)
        local good=0
        if [ "$expect" = pass ]; then
            [ $rc -eq 0 ] && good=1
        else
            [ $rc -eq 1 ] && grep -q 'lost' "$log" && good=1
        fi
        if [ $good -eq 1 ]; then
            ok=$((ok + 1))
            rm -f "$log"
            # A caught faulty run keeps its sandbox by design: drop it.
            [ "$expect" = caught ] && find "$WORK/sandboxes" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
        else
            bad=$((bad + 1))
            echo "  $name run $i: $(basename "$s") seed $seed exit $rc ($(awk "BEGIN{printf \"%.1f\", $t1-$t0}") s) -- log $log"
            grep -E '^\s+- |sandbox:|replay:' "$log" | head -8 | sed 's/^/    /'
        fi
        check_leaks "$name run $i"
        if (((i + 1) % 50 == 0)); then
            echo "  ... $((i + 1))/$RUNS: $ok as expected, $bad not"
        fi
    done
    end=$(date +%s.%N)
    awk -v n="$RUNS" -v ok="$ok" -v bad="$bad" -v s="$start" -v e="$end" -v name="$name" 'BEGIN {
        t = e - s; per = (n > 0) ? t / n : 0;
        printf "== %s: %d run(s), %d as expected, %d not; %.1f s, %.2f s/run (1000 runs: ~%.0f min)\n",
            name, n, ok, bad, t, per, per * 1000 / 60 }'
    return $((bad > 0))
}

status=0
if [ "$PHASE" = correct ] || [ "$PHASE" = both ]; then
    phase correct pass "${CORRECT[@]}" || status=1
fi
if [ "$PHASE" = faulty ] || [ "$PHASE" = both ]; then
    phase faulty caught "${FAULTY[@]}" || status=1
fi
[ $leaks -eq 0 ] || { echo "soak: $leaks run(s) left processes behind"; status=1; }
if [ $status -eq 0 ]; then
    rm -rf "$WORK"
    echo "soak: all as expected"
else
    echo "soak: FAILED (logs and kept sandboxes in $WORK)"
fi
exit $status
