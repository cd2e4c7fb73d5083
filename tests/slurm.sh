#!/usr/bin/env bash
# make test-slurm: `eoslab sweep --submit` on a real Slurm. Installs Slurm and munge from
# Debian's packages when missing (needs root, as slurmd does), starts a single-node cluster on
# this machine (munged, slurmctld and slurmd on localhost with a generated slurm.conf, all state
# in a temporary directory), submits a sweep of claim tradeoff (digits, 3 seeds: one array task
# each), kills one running task with scancel once it has a checkpoint and requeues it, and
# checks that the requeued task resumed from its checkpoint and that `eoslab collect` prints
# the same verdict and numbers, and keeps the same per-seed result files, as the
# single-process `eoslab claim` of the same configuration. Stops the daemons it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
start=$(date +%s)
say() { echo "[test-slurm $(( $(date +%s) - start ))s] $*"; }
fail() { echo "[test-slurm] FAILED: $*" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
  || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  [ "$(id -u)" = 0 ] || fail "Slurm is not installed and this is not root (slurmd runs as root): \
apt-get install slurmctld slurmd slurm-client munge"
  say "installing slurmctld slurmd slurm-client munge from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi
[ "$(id -u)" = 0 ] || fail "slurmd must run as root"
say "$(slurmctld -V), $(munged --version 2>&1 | head -1 | awk '{print $1}')"

# The binary `make test` built (same profile, so nothing is rebuilt after it), or EOSLAB_BIN.
if [ -n "${EOSLAB_BIN:-}" ]; then
  BIN=$(realpath "$EOSLAB_BIN")
else
  cargo test -p eoslab --no-run -q >/dev/null 2>&1 || cargo test -p eoslab --no-run
  BIN="$ROOT/target/debug/eoslab"
fi
[ -x "$BIN" ] || fail "$BIN was not built"

D=$(mktemp -d /tmp/eoslab-slurm.XXXXXX)
mkdir -p "$D/state" "$D/spool" "$D/munge"
cleanup() {
  for p in "$D/slurmd.pid" "$D/slurmctld.pid" "$D/munge/munged.pid"; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
  done
  sleep 1
  for p in "$D/slurmd.pid" "$D/slurmctld.pid" "$D/munge/munged.pid"; do
    [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null || true
  done
  [ -n "${KEEP:-}" ] && echo "kept $D" || rm -rf "$D"
}
trap cleanup EXIT

# Two free ports for slurmctld and slurmd.
read -r CTLD_PORT SLURMD_PORT < <(python3 -c 'import socket
ps = []
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ps.append(s)
print(*[s.getsockname()[1] for s in ps])')
HOST=$(hostname -s)
cat > "$D/slurm.conf" <<EOF
ClusterName=eoslabtest
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.socket.2
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobRequeue=1
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
NodeName=$HOST CPUs=$(nproc) RealMemory=2000 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$D/slurm.conf"
head -c 1024 /dev/urandom > "$D/munge/munge.key"
chmod 400 "$D/munge/munge.key"
munged --force --key-file="$D/munge/munge.key" --socket="$D/munge/munge.socket.2" \
  --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" --seed-file="$D/munge/seed"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  sleep 0.3
done
sinfo -h -o %t | grep -q idle || { tail -20 "$D/slurmctld.log" "$D/slurmd.log"; fail "the node never came up"; }
say "cluster up: $(sinfo -h -o '%P %D %t %N')"

CLAIM=(tradeoff --preset digits --seeds 3 --horizon 1)
SW="$D/sweep"
"$BIN" sweep "${CLAIM[@]}" --checkpoint-every 20 --out "$SW" --time 10:00 --submit
JOB=$(awk '{print $1}' "$SW/jobs.txt")
say "submitted job array $JOB"

# Kill task 0 once it has a checkpoint (its pointer file), then requeue it.
for _ in $(seq 600); do
  ls "$SW"/tasks/0/tradeoff/seed-0/resume/*.json >/dev/null 2>&1 && break
  sleep 0.1
done
ls "$SW"/tasks/0/tradeoff/seed-0/resume/*.json >/dev/null 2>&1 || fail "task 0 never checkpointed"
scancel "${JOB}_0"
for _ in $(seq 100); do
  squeue -h -j "${JOB}_0" -o %T 2>/dev/null | grep -q RUNNING || break
  sleep 0.2
done
[ -f "$SW/tasks/0/done.json" ] && fail "task 0 finished before it was killed"
scontrol requeue "${JOB}_0"
# A requeued job waits before it is eligible again; let it start now.
scontrol update jobid="${JOB}_0" StartTime=now
say "killed task 0 (scancel) and requeued it"

deadline=$(( $(date +%s) + 240 ))
while [ -n "$(squeue -h -j "$JOB" -o %i 2>/dev/null)" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { squeue; fail "the sweep did not finish in 240 s"; }
  sleep 1
done
for i in 0 1 2; do
  [ -f "$SW/tasks/$i/done.json" ] || { cat "$SW/logs/task-$i.err"; fail "task $i did not finish"; }
done
grep -q "resumed at step" "$SW/logs/task-0.err" || { cat "$SW/logs/task-0.err"; fail "task 0 did not resume from its checkpoint"; }
say "all tasks finished; task 0 $(grep -o 'resumed at step [0-9]*' "$SW/logs/task-0.err" | head -1)"

"$BIN" sweep "${CLAIM[@]}" --checkpoint-every 20 --out "$SW" --time 10:00 --submit 2>&1 \
  | grep -q "every task has finished" || fail "a resubmission of a finished sweep submitted tasks"
"$BIN" collect "$SW" > "$D/collect.txt"

EOSLAB_JOBS=2 "$BIN" claim "${CLAIM[@]}" --out "$D/single" > "$D/single.txt" 2>"$D/single.err"
cmp "$D/single.txt" "$D/collect.txt" || { diff "$D/single.txt" "$D/collect.txt" | head -20; fail "collect differs from eoslab claim"; }
for s in 0 1 2; do
  cmp "$D/single/tradeoff/seed-$s/result.safetensors" "$SW/collect/all/tradeoff/seed-$s/result.safetensors" \
    || fail "seed $s's result differs from the single-process run"
done
say "collect == eoslab claim: $(grep -m1 "^CLAIM" "$D/collect.txt"); 3 seed results bit-identical"
say "passed in $(( $(date +%s) - start )) s against $(slurmctld -V)"
