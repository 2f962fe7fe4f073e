#!/usr/bin/env bash
# Starts a three-node Slurm cluster on this one machine for fairmq-topology's Slurm tests:
# munged, slurmctld and three slurmd (n1, n2, n3 on 127.0.0.11, .12, .13), no systemd.
#
#   topology/ci/slurm-up.sh                  install (if needed), configure, start, wait for idle nodes
#   topology/ci/slurm-up.sh --job-container  the same with job_container/tmpfs: every job gets a
#                                            private /dev/shm and /tmp on each node, removed with it
#   topology/ci/slurm-up.sh --down           stop the daemons this script started
#
# Needs root (slurmd runs tasks as the submitting user; munged as the munge user) and Debian's
# packages slurmctld slurmd slurm-client munge (installed with apt-get if missing; Debian 12
# ships Slurm 22.05). Idempotent: running it again with the cluster up only checks it; running it
# with the other configuration restarts the daemons with that one.
#
# What makes three slurmd run side by side on one host: every node has its own Port= and its own
# loopback address (NodeAddr=127.0.0.11..13; all of 127.0.0.0/8 is loopback), %n in the spool,
# pid and log paths, and each slurmd runs in its own UTS namespace with the node's host name
# (`unshare --uts` + `hostname nX` before `exec slurmd`). The node names do not resolve; tasks
# and the controller read a node's address from `scontrol show node`.
#
# Nodes declare CPUs=8 (SlurmdParameters=config_overrides, whatever the machine has) so that
# several test jobs (2 tasks per node each) share the nodes instead of queueing.
#
# State lives in $FAIRMQ_SLURM_DIR (default /var/tmp/fairmq-slurm): logs slurmctld.log,
# slurmd-n1.log ...; the configuration is /etc/slurm/slurm.conf (refused if one exists that this
# script did not write).
set -euo pipefail

STATE=${FAIRMQ_SLURM_DIR:-/var/tmp/fairmq-slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# fairmq-rs test cluster (topology/ci/slurm-up.sh)"
NODES=(n1 n2 n3)
ADDRS=(127.0.0.11 127.0.0.12 127.0.0.13)
PORTS=(17011 17012 17013)
CTLD_PORT=17017

log() { echo "slurm-up: $*"; }
die() {
    echo "slurm-up: error: $*" >&2
    exit 1
}

stop_pidfile() {
    local f=$1
    [[ -f $f ]] || return 0
    local pid
    pid=$(cat "$f" 2>/dev/null || true)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$f"
}

JOB_CONTAINER=0
case ${1:-} in
--job-container) JOB_CONTAINER=1 ;;
--down | "") ;;
*) die "unknown argument '$1' (use --job-container or --down)" ;;
esac

if [[ ${1:-} == --down ]]; then
    for n in "${NODES[@]}"; do stop_pidfile "$STATE/slurmd-$n.pid"; done
    stop_pidfile "$STATE/slurmctld.pid"
    stop_pidfile /run/munge/munged.pid
    log "stopped"
    exit 0
fi

[[ $(id -u) == 0 ]] || die "run as root (slurmd and munged need it)"
start=$(date +%s.%N)

# ---- packages
if ! command -v slurmd >/dev/null || ! command -v slurmctld >/dev/null ||
    ! command -v srun >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi
command -v unshare >/dev/null || die "unshare (util-linux) is missing"

mkdir -p "$STATE/ctld"
for n in "${NODES[@]}"; do mkdir -p "$STATE/spool/$n" "$STATE/job-container/$n"; done

# ---- munge: a key from mungekey --create, munged as the munge user
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating the munge key"
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- munged --force --pid-file=/run/munge/munged.pid
    for _ in $(seq 100); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.05
    done
    munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# ---- slurm.conf
if [[ -f $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script; move it away to use the test cluster"
fi
nodelines=""
for i in "${!NODES[@]}"; do
    nodelines+="NodeName=${NODES[$i]} NodeAddr=${ADDRS[$i]} NodeHostname=${NODES[$i]} Port=${PORTS[$i]} CPUs=8 State=UNKNOWN"$'\n'
done
containerlines=""
if [[ $JOB_CONTAINER == 1 ]]; then
    # One BasePath per node (each slurmd mounts its own private); a job gets
    # <BasePath>/<node>/<job> for its /tmp, and a /dev/shm of its own.
    containerlines="JobContainerType=job_container/tmpfs"$'\n'"PrologFlags=Contain"$'\n'
    {
        echo "$MARKER"
        echo "AutoBasePath=true"
        for n in "${NODES[@]}"; do echo "NodeName=$n BasePath=$STATE/job-container/$n"; done
    } >/etc/slurm/job_container.conf
elif [[ -f /etc/slurm/job_container.conf ]] && grep -qF "$MARKER" /etc/slurm/job_container.conf; then
    rm -f /etc/slurm/job_container.conf
fi
mkdir -p /etc/slurm
cat >"$CONF.new" <<EOF
$MARKER
ClusterName=fairmq
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd-%n.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
${containerlines}SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
MinJobAge=60
${nodelines}PartitionName=debug Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$CONF.new" "$CONF" 2>/dev/null; then
    mv "$CONF.new" "$CONF"
    changed=1
else
    rm -f "$CONF.new"
    changed=0
fi

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

if [[ $changed == 1 ]]; then
    # A new configuration: restart whatever runs.
    for n in "${NODES[@]}"; do stop_pidfile "$STATE/slurmd-$n.pid"; done
    stop_pidfile "$STATE/slurmctld.pid"
fi

# ---- slurmctld and the slurmd, in the foreground (-D) in the background
if ! alive "$STATE/slurmctld.pid"; then
    log "starting slurmctld"
    setsid slurmctld -D -i >>"$STATE/slurmctld.out" 2>&1 </dev/null &
    echo $! >"$STATE/slurmctld.pid"
fi
for _ in $(seq 200); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.05; done
scontrol ping | grep -q UP || die "slurmctld does not answer (see $STATE/slurmctld.log)"

for i in "${!NODES[@]}"; do
    n=${NODES[$i]}
    if ! alive "$STATE/slurmd-$n.pid"; then
        log "starting slurmd $n on ${ADDRS[$i]}:${PORTS[$i]}"
        setsid unshare --uts sh -c "hostname $n && exec slurmd -D -N $n" \
            >>"$STATE/slurmd-$n.out" 2>&1 </dev/null &
        echo $! >"$STATE/slurmd-$n.pid"
    fi
done

# ---- wait for three idle nodes
for _ in $(seq 600); do
    idle=$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2 == "idle" || $2 == "mix" || $2 == "alloc" {c++} END {print c+0}')
    [[ $idle == "${#NODES[@]}" ]] && break
    sleep 0.1
done
if [[ $idle != "${#NODES[@]}" ]]; then
    sinfo -N -l >&2 || true
    die "the nodes did not become idle (see $STATE/slurmd-*.log)"
fi
end=$(date +%s.%N)
log "$(sinfo -h -N -o '%N' | tr '\n' ' ')up ($(awk "BEGIN {printf \"%.1f\", $end - $start}") s)$([[ $JOB_CONTAINER == 1 ]] && echo ", job_container/tmpfs")"
sinfo -N -o '%N %t %c %o'
