#!/usr/bin/env bash
# make soak: the bundled suite's convergence scenarios (those expecting
# `converged = true`) run SOAK_RUNS times against the correct fake, where every
# run must pass (no false failure), then SOAK_RUNS times with a fault that
# loses an acknowledged write injected, where every run must be caught (exit 1,
# with the loss named): a `lie` on APPLY MESSAGE or `hide-missing` on APPLY
# RESERVE in every scenario that appends, and a `lie` on the first APPLY
# MAILBOX of the first `-u`, `-m` or `-A` step in every scenario that has one.
# No scenario is left out: where the catch-up heals the loss, the history
# check (what the target acknowledged, read by read) still catches it.
# Run k uses scenario k mod N and seed SOAK_SEED+k; every failing run prints
# its replay command and keeps its sandbox.
#
#   SOAK_RUNS=1000     runs per phase
#   SOAK_PHASE=both    correct | faulty | both
#   SOAK_JOBS=3        runs at a time (each in its own sandbox dir; a run
#                      mostly waits on the client, so more than the cores fit)
#   SOAK_SEED=<now>    first seed (printed)
#   BIN=target/release/backupd-sim   CYRUS_BIN=/usr/lib/cyrus/bin
#
# After each run it also checks that no process of the run's sandbox is left.
# Exit 0 only when every correct run passed, every faulty run was caught and
# nothing leaked.
set -u
cd "$(dirname "$0")/.."

RUNS=${SOAK_RUNS:-1000}
JOBS=${SOAK_JOBS:-3}
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
# The soak runs on the fake: leave out scenarios it cannot run there (the
# runner would SKIP them and exit 2, nothing run); `run --list` says which.
mapfile -t CORRECT < <("$BIN" run --list --target fake "${CORRECT[@]}" 2> >(sed 's/^/soak: /' >&2))
# Faults that lose messages only show where messages are sent after the first
# step: the convergence scenarios that append.
mapfile -t APPENDING < <(grep -l 'append = {' "${CORRECT[@]}" | sort)
[ ${#CORRECT[@]} -gt 0 ] || { echo "soak: no convergence scenario found" >&2; exit 2; }

# Scenarios with a `-u`, `-m` or `-A` sync step (as the client's mode or the step's).
mapfile -t MODAL < <(grep -l -E 'mode = "(user|mailbox|all)"' "${CORRECT[@]}" | sort)

# Faulty copies: the first steps become a fault step and an append (as
# tests/it/runner.rs does), and a last rolling pass runs under the fault, so that work a lock
# window kept queued until the end of the steps meets the fault too (else in
# those scenarios nothing is sent while it is active, and nothing is tested).
# `last_pass` appends that step before `[expect]`.
last_pass() { awk '/^\[expect\]$/ && !done { print "[[step]]"; print "sync = { mode = \"rolling-once\" }"; print ""; done = 1 } { print }'; }
FAULTY=()
for s in "${APPENDING[@]}"; do
    name=$(basename "$s" .toml)
    for kind in lie hide-missing; do
        case $kind in
        # On every match, not just the first: the real client heals a one-off
        # loss whenever it re-sends APPLY RESERVE for the same GUIDs (e.g. after
        # a rename or a lock retry), and then the backup legitimately converges.
        lie) fault='fault = { name = "soak-lie", when = { verb = "APPLY MESSAGE" }, action = "lie" }' ;;
        hide-missing) fault='fault = { name = "soak-hide", when = { verb = "APPLY RESERVE" }, action = "hide-missing", count = 1 }' ;;
        esac
        out="$WORK/faulty/$name-$kind.toml"
        # One new message in the first user's INBOX, a mailbox the target
        # knows: the pass that carries it reserves it (APPLY RESERVE) and
        # uploads it (APPLY MESSAGE), so both faults have something to act on.
        user=$(grep -m1 '^name = ' "$s" | sed 's/^name = //')
        awk -v f="$fault" -v u="$user" 'done == 0 && /^\[\[step\]\]$/ { print; print f; print "[[step]]"; print "append = { user = " u ", count = 1 }"; print "[[step]]"; done = 1; next } { print }' "$s" | last_pass > "$out"
        FAULTY+=("$out")
    done
done
# A lie to the first APPLY MAILBOX of the first -u, -m or -A step: right
# before that step, the fault, and one new message for the first user, so that
# the step has something to send (else it may find everything replicated).
for s in "${MODAL[@]}"; do
    name=$(basename "$s" .toml)
    # A target refusing every connection during the steps receives no write
    # to lie to: nothing can be injected there.
    grep -q 'action = "refuse-connections"' "$s" && continue
    user=$(grep -m1 '^name = ' "$s" | sed 's/^name = //')
    if grep -q -E '^mode = "(user|mailbox|all)"' "$s"; then
        pat='^sync = '
    else
        pat='^sync = .*mode = "(user|mailbox|all)"'
    fi
    fault='fault = { name = "soak-lie-mailbox", when = { verb = "APPLY MAILBOX" }, nth = 1, action = "lie" }'
    out="$WORK/faulty/$name-lie-mailbox.toml"
    awk -v f="$fault" -v u="$user" -v pat="$pat" '
        done == 0 && prev == "[[step]]" && $0 ~ pat {
            print "append = { user = " u ", count = 1 }"; print "[[step]]"; print f; print "[[step]]"; done = 1
        }
        { print; prev = $0 }' "$s" | last_pass > "$out"
    grep -q soak-lie-mailbox "$out" && FAULTY+=("$out")
done

# run NAME EXPECT I SCENARIO SEED: one run in its own sandbox dir; appends one
# line to $WORK/results: "<name> <i> ok|bad|leak <seconds> <rc> <scenario> <seed>".
# EXPECT is pass (exit 0) or caught (exit 1 and a lost message named).
run_one() {
    local name=$1 expect=$2 i=$3 s=$4 seed=$5
    local sb="$WORK/sandboxes/$name-$i" log="$WORK/logs/$name-$i.log" t0 t1 rc good=0 left verdict
    mkdir -p "$sb" && chmod 755 "$sb"
    t0=$(date +%s.%N)
    "$BIN" run "$s" --seed "$seed" --sandbox-dir "$sb" --cyrus-bin "$CYRUS_BIN" --json "$log.json" > "$log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    if [ "$expect" = pass ]; then
        [ $rc -eq 0 ] && good=1
    elif grep -q -E '"faults": ?0[,}]' "$log.json" 2>/dev/null; then
        # The injected fault never fired: this run tested nothing.
        echo "  $name run $i: $(basename "$s"): the injected fault never fired" >> "$log"
    else
        # Caught: the run failed, naming the loss (the ledger's lost changes,
        # or the history check's acknowledged write lost).
        [ $rc -eq 1 ] && grep -q -E 'acknowledged write lost|lost changes: expected|lost: message' "$log" && good=1
    fi
    # No process may still name this run's sandbox dir. The pattern brackets
    # one letter so that grep's own command line does not match it (the path
    # is mktemp's plus a word and a number: no other specials).
    local pattern="$WORK/sandboxes/[${name:0:1}]${name:1}-$i/"
    left=$(grep -l -a "$pattern" /proc/[0-9]*/cmdline 2>/dev/null || true)
    if [ -n "$left" ]; then
        sleep 1
        left=$(grep -l -a "$pattern" /proc/[0-9]*/cmdline 2>/dev/null || true)
    fi
    verdict=bad
    [ $good -eq 1 ] && verdict=ok
    if [ -n "$left" ]; then
        verdict=leak
        echo "  LEAK after $name run $i: $(echo "$left" | tr '\n' ' ')"
    fi
    if [ $verdict = ok ]; then
        # A caught faulty run keeps its sandbox by design: drop it.
        rm -rf "$sb" "$log" "$log.json"
    else
        echo "  $name run $i: $(basename "$s") seed $seed exit $rc ($(awk "BEGIN{printf \"%.1f\", $t1-$t0}") s) -- log $log"
        grep -E '^\s+- |sandbox:|replay:' "$log" | head -8 | sed 's/^/    /'
    fi
    # One short line per run: appends of this size are atomic.
    echo "$name $i $verdict $(awk "BEGIN{printf \"%.2f\", $t1-$t0}") $rc $(basename "$s") $seed" >> "$WORK/results"
}

# phase NAME EXPECT SCENARIOS...: RUNS runs, JOBS at a time.
phase() {
    local name=$1 expect=$2
    shift 2
    local list=("$@") n=$# start end i done=0 next_report=50
    start=$(date +%s.%N)
    echo "== $name: $RUNS run(s) over ${#list[@]} scenario(s), $JOBS at a time, expecting: $expect"
    for ((i = 0; i < RUNS; i++)); do
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
        run_one "$name" "$expect" "$i" "${list[$((i % n))]}" "$((SEED0 + i))" &
        done=$(grep -c "^$name " "$WORK/results" 2>/dev/null || true)
        if [ "${done:-0}" -ge "$next_report" ]; then
            echo "  ... $done/$RUNS done: $(grep -c "^$name [0-9]* ok " "$WORK/results") as expected"
            next_report=$((next_report + 50))
        fi
    done
    wait
    end=$(date +%s.%N)
    awk -v n="$RUNS" -v jobs="$JOBS" -v s="$start" -v e="$end" -v name="$name" '
        $1 == name { runs++; if ($3 == "ok") ok++; else if ($3 == "leak") leak++; else bad++; sum += $4
                     if ($4 > max) max = $4 }
        END {
            t = e - s; per = (runs > 0) ? t / runs : 0;
            printf "== %s: %d run(s), %d as expected, %d not, %d leaked; %.1f s wall, %.2f s/run wall with %d at a time, %.2f s/run each (max %.1f s); 1000 runs: ~%.0f min\n",
                name, runs, ok, bad, leak, t, per, jobs, (runs > 0) ? sum / runs : 0, max, per * 1000 / 60
            exit (runs == n && bad == 0 && leak == 0) ? 0 : 1
        }' "$WORK/results"
}

status=0
if [ "$PHASE" = correct ] || [ "$PHASE" = both ]; then
    phase correct pass "${CORRECT[@]}" || status=1
fi
if [ "$PHASE" = faulty ] || [ "$PHASE" = both ]; then
    phase faulty caught "${FAULTY[@]}" || status=1
fi
if [ $status -eq 0 ]; then
    rm -rf "$WORK"
    echo "soak: all as expected"
else
    echo "soak: FAILED (logs and kept sandboxes in $WORK)"
fi
exit $status
