#!/usr/bin/env bash
# End-to-end test of examples/slurm/: starts a one-node Slurm cluster on localhost (its own munged,
# slurmctld and slurmd, every file in a fresh temp dir, free ports), runs a batch once unsharded
# and once as a 3-task array job + merge job (examples/slurm/submit.sh 3), and compares the CSVs
# (and index.html) byte for byte.
#
#   tests/slurm/local_cluster.sh GLIMPSE_COMPARE BASE_MODEL FINETUNED_MODEL BATCH.jsonl WORK_DIR
#
# Exit status: 0 the sharded CSVs equal the unsharded ones; 1 they differ, a job failed or timed
# out, or the unsharded run failed; 2 bad arguments; 77 Slurm cannot run here (not installed, not
# root, a daemon does not come up), with one line "slurm: cannot start: <why>" on stdout.
#
# Environment: KEEP=1 keeps the temp dir (configuration, daemon logs); TIMEOUT (seconds, default
# 240) bounds the wait for the jobs; SHARDS (default 3) the array size.
# Needs root: slurmd runs job steps as the submitting user (setuid). The daemons started here are
# stopped by their PIDs on exit, whatever happens.

set -uo pipefail

usage() {
    echo "usage: $0 GLIMPSE_COMPARE BASE_MODEL FINETUNED_MODEL BATCH.jsonl WORK_DIR" >&2
    exit 2
}
[ $# -eq 5 ] || usage

skip() {
    echo "slurm: cannot start: $*"
    exit 77
}

# The last non-empty line of the first of these files that has one.
last_line() {
    local f l
    for f in "$@"; do
        l=$(grep -v '^[[:space:]]*$' "$f" 2>/dev/null | tail -n 1)
        [ -n "$l" ] && { echo "$l"; return; }
    done
    echo "no log"
}

abspath() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }

EXE=$(abspath "$1") || usage
BASE=$(abspath "$2") || usage
TUNED=$(abspath "$3") || usage
BATCH_FILE=$(abspath "$4") || usage
mkdir -p "$5" || usage
WORK=$(cd "$5" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SUBMIT="$REPO/examples/slurm/submit.sh"
TIMEOUT=${TIMEOUT:-240}
SHARDS=${SHARDS:-3}

for f in "$EXE" "$BATCH_FILE" "$SUBMIT"; do
    [ -e "$f" ] || { echo "$0: no such file: $f" >&2; exit 2; }
done

# --- can Slurm run here? ----------------------------------------------------------------------
export PATH="$PATH:/usr/sbin:/sbin"  # the daemons, for a user whose PATH lacks them
for tool in munged slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
done
[ "$(id -u)" -eq 0 ] || skip "not root"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/glimpse-slurm.XXXXXX") || skip "mktemp failed"
chmod 700 "$TMP"
PIDS=()
array_id=
merge_id=

# shellcheck disable=SC2317  # (invoked by the EXIT trap)
cleanup() {
    local rc=$? pid i
    # Jobs first (a test killed mid-run leaves slurmstepd and glimpse-compare running).
    if [ -n "${array_id:-}${merge_id:-}" ]; then
        # shellcheck disable=SC2086
        scancel ${array_id:-} ${merge_id:-} 2>/dev/null
        for _ in $(seq 50); do
            [ -z "$(squeue -h -o '%i' 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    # Reverse start order: slurmd, slurmctld, munged.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    # munged runs with --foreground, so its recorded PID is the daemon's. A timed-out test
    # scancels its jobs before it gets here.
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port (the kernel picks one, then it is released: racy only against another
# process binding the same port within milliseconds).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

# --- munge --------------------------------------------------------------------------------------
mkdir -p "$TMP/munge" "$TMP/spool" "$TMP/state" "$TMP/log"
chmod 700 "$TMP/munge"
MUNGE_KEY="$TMP/munge/munge.key"
MUNGE_SOCKET="$TMP/munge/munge.socket"
if command -v mungekey >/dev/null 2>&1; then
    mungekey --create --keyfile="$MUNGE_KEY" >/dev/null 2>&1 ||
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
else
    dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
fi
chmod 400 "$MUNGE_KEY"
munged --foreground --force --key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET" \
    --pid-file="$TMP/munge/munged.pid" --log-file="$TMP/log/munged.log" \
    --seed-file="$TMP/munge/munged.seed" >"$TMP/log/munged.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    [ -S "$MUNGE_SOCKET" ] && break
    kill -0 "${PIDS[0]}" 2>/dev/null || break
    sleep 0.1
done
[ -S "$MUNGE_SOCKET" ] ||
    skip "munged did not start: $(last_line "$TMP/log/munged.out" "$TMP/log/munged.log")"

# --- slurm.conf ---------------------------------------------------------------------------------
HOST=$(hostname -s)
CPUS=$(nproc)
CTLD_PORT=$(free_port)
SLURMD_PORT=$(free_port)
while [ "$SLURMD_PORT" = "$CTLD_PORT" ]; do SLURMD_PORT=$(free_port); done
USER_NAME=$(id -un)
CONF="$TMP/slurm.conf"
: >"$TMP/plugstack.conf"
cat >"$CONF" <<EOF
ClusterName=glimpse-test
SlurmctldHost=$HOST
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$USER_NAME
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
ReturnToService=2
MinJobAge=3600
DependencyParameters=kill_invalid_depend
PlugStackConfig=$TMP/plugstack.conf
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/log/slurmctld.log
SlurmdLogFile=$TMP/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=256 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
# Slurm 22.05 reads cgroup.conf next to slurm.conf when a cgroup plugin is loaded; none is here,
# but an empty-ish file keeps a site-wide one from being looked for.
echo "CgroupAutomount=no" >"$TMP/cgroup.conf"
export SLURM_CONF="$CONF"
unset SLURM_JOB_ID SLURM_ARRAY_JOB_ID

dump_logs() {
    local f
    for f in "$TMP"/log/slurmctld.log "$TMP"/log/slurmd.log "$TMP"/log/munged.log; do
        [ -s "$f" ] || continue
        echo "--- $f (last 20 lines)"
        tail -n 20 "$f"
    done
}

slurmctld -D -i -f "$CONF" >"$TMP/log/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$CONF" >"$TMP/log/slurmd.out" 2>&1 &
PIDS+=($!)

up=0
for _ in $(seq 120); do  # 60 s
    for d in 1:slurmctld 2:slurmd; do
        kill -0 "${PIDS[${d%%:*}]}" 2>/dev/null || {
            dump_logs >&2
            skip "${d#*:} exited at start: $(last_line "$TMP/log/${d#*:}.out")"
        }
    done
    state=$(sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null)
    if [ "$state" = idle ]; then up=1; break; fi
    sleep 0.5
done
if [ "$up" != 1 ]; then
    dump_logs >&2
    skip "node $HOST not idle within 60 s (state: '${state:-no answer}')"
fi
echo "slurm: cluster up on $HOST (slurmctld :$CTLD_PORT, slurmd :$SLURMD_PORT, $CPUS CPUs)"

# --- the unsharded reference ------------------------------------------------------------------
# --threads 1 both times: the shards run with --cpus-per-task=1, and equal thread counts keep the
# float summation order, so "byte-identical" is not left to luck.
rm -rf "$WORK/whole" "$WORK/sharded"
echo "slurm: unsharded run into $WORK/whole"
"$EXE" --base_model "$BASE" --finetuned_model "$TUNED" --batch "$BATCH_FILE" \
    --output_dir "$WORK/whole" --threads 1 >"$WORK/whole.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
    cat "$WORK/whole.log"
    echo "slurm: the unsharded run failed (exit $rc)"
    exit 1
fi

# --- the array job + merge ----------------------------------------------------------------------
mkdir -p "$WORK/logs"
export GLIMPSE_COMPARE="$EXE" BASE_MODEL="$BASE" FINETUNED_MODEL="$TUNED" BATCH="$BATCH_FILE"
export OUTPUT_DIR="$WORK/sharded" EXTRA_ARGS=""
ids=$(cd "$WORK/logs" && bash "$SUBMIT" "$SHARDS" --cpus-per-task=1) || {
    echo "slurm: submit.sh failed: $ids"
    dump_logs
    exit 1
}
echo "$ids"
array_id=$(echo "$ids" | sed -n 's/^array job: *\([0-9]*\).*/\1/p')
merge_id=$(echo "$ids" | sed -n 's/^merge job: *\([0-9]*\).*/\1/p')
if [ -z "$array_id" ] || [ -z "$merge_id" ]; then
    echo "slurm: cannot read the job ids from submit.sh's output"
    exit 1
fi

deadline=$((SECONDS + TIMEOUT))
while [ -n "$(squeue -h -j "$array_id,$merge_id" -o '%i' 2>/dev/null)" ]; do
    if [ $SECONDS -ge $deadline ]; then
        echo "slurm: jobs still queued or running after $TIMEOUT s:"
        squeue -j "$array_id,$merge_id"
        scancel "$array_id" "$merge_id" 2>/dev/null
        dump_logs
        exit 1
    fi
    sleep 1
done

# Every task's and the merge's final state and exit code (kept MinJobAge seconds).
states=$({ scontrol -o show job "$array_id"; scontrol -o show job "$merge_id"; } 2>&1 | grep 'JobId=' | sort -u)
failed=0
while read -r line; do
    [ -n "$line" ] || continue
    jid=$(echo "$line" | grep -o 'JobId=[0-9]*' | head -n 1)
    task=$(echo "$line" | grep -o 'ArrayTaskId=[0-9]*' | head -n 1)
    st=$(echo "$line" | grep -o 'JobState=[A-Z_]*' | head -n 1)
    ec=$(echo "$line" | grep -o ' ExitCode=[0-9:]*' | head -n 1)
    echo "slurm: $jid $task $st$ec"
    [ "$st" = JobState=COMPLETED ] || failed=1
done <<<"$states"
ntasks=$(echo "$states" | grep -c 'ArrayTaskId=')
if [ "$ntasks" -ne "$SHARDS" ]; then
    echo "slurm: expected $SHARDS array tasks, scontrol shows $ntasks"
    failed=1
fi
for log in "$WORK"/logs/*.out; do
    [ -e "$log" ] || continue
    echo "--- $(basename "$log")"
    cat "$log"
done
if [ $failed -ne 0 ]; then
    echo "slurm: a job did not complete"
    dump_logs
    exit 1
fi

# --- the comparison ------------------------------------------------------------------------------
status=0
shopt -s nullglob
whole_csvs=("$WORK"/whole/summary_*.csv "$WORK"/whole/per_image_*.csv)
if [ ${#whole_csvs[@]} -eq 0 ]; then
    echo "slurm: the unsharded run wrote no CSV"
    exit 1
fi
# index.html too, where the unsharded run writes one (the merge's must be the same bytes).
[ -e "$WORK/whole/index.html" ] && whole_csvs+=("$WORK/whole/index.html")
for w in "${whole_csvs[@]}"; do
    s="$WORK/sharded/$(basename "$w")"
    if [ ! -e "$s" ]; then
        echo "slurm: missing $s"
        status=1
    elif cmp -s "$w" "$s"; then
        echo "slurm: identical $(basename "$w")"
    else
        echo "slurm: DIFFERENT $(basename "$w"):"
        diff -u "$w" "$s" | head -n 200
        status=1
    fi
done
for s in "$WORK"/sharded/summary_*.csv "$WORK"/sharded/per_image_*.csv; do
    [ -e "$WORK/whole/$(basename "$s")" ] || { echo "slurm: extra $s"; status=1; }
done
[ -e "$WORK/sharded/index.html" ] || { echo "slurm: the merge wrote no index.html"; status=1; }
[ $status -eq 0 ] && echo "slurm: sharded ($SHARDS tasks) == unsharded"
exit $status
