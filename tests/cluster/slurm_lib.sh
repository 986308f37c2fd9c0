# Sourced by the Slurm cluster test after tests/cluster/lib.sh: a real Slurm cluster on the test
# cluster's nodes. munged (its own key and socket) and slurmctld run in node1's namespaces, one
# slurmd in each node's (with the node's hostname, so it knows itself), from a generated slurm.conf:
# proctrack/linuxproc and task/none (no cgroups), no accounting database: finished jobs are read
# from the filetxt job-completion log (jobcomp/filetxt) and `scontrol show job`. Everything runs
# inside the nodes' namespaces, so the cluster's `down` (the test's trap) ends it. Each slurmd has
# a private /tmp: set CLUSTER_OUT_BASE (before lib.sh) to a shared folder outside /tmp.
SL=/run/more-cluster/$MORE_CLUSTER/slurm
export SLURM_CONF=$SL/slurm.conf
slurm_up() {
  bash "$SRC/tests/cluster/setup_slurm.sh"
  mkdir -p "$SL/state" "$SL/spool"
  chmod 755 "$SL" "$SL/state" "$SL/spool"
  dd if=/dev/urandom of="$SL/munge.key" bs=1024 count=1 status=none
  chmod 400 "$SL/munge.key"
  bash "$CLUSTER_SH" exec node1 munged --force --socket="$SL/munge.sock" --key-file="$SL/munge.key" \
    --pid-file="$SL/munged.pid" --log-file="$SL/munged.log" --seed-file="$SL/munged.seed"
  local i
  {
    echo "ClusterName=$MORE_CLUSTER"
    echo "SlurmctldHost=node1(198.18.0.1)"
    echo "SlurmUser=root"
    echo "AuthType=auth/munge"
    echo "AuthInfo=socket=$SL/munge.sock"
    echo "CredType=cred/munge"
    echo "StateSaveLocation=$SL/state"
    echo "SlurmdSpoolDir=$SL/spool/%n"
    echo "SlurmctldPidFile=$SL/slurmctld.pid"
    echo "SlurmdPidFile=$SL/slurmd-%n.pid"
    echo "SlurmctldLogFile=$SL/slurmctld.log"
    echo "SlurmdLogFile=$SL/slurmd-%n.log"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "MpiDefault=none"
    echo "SchedulerType=sched/backfill"
    # a released requeued job starts within ~2 s (defaults: main loop 60 s, backfill 30 s)
    echo "SchedulerParameters=sched_interval=2,bf_interval=2"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core"
    echo "SlurmdParameters=config_overrides"
    echo "ReturnToService=2"
    echo "MinJobAge=600"
    echo "KillWait=5"
    echo "JobCompType=jobcomp/filetxt"
    echo "JobCompLoc=$SL/jobcomp.txt"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    for i in 1 2; do echo "NodeName=node$i NodeAddr=198.18.0.$i CPUs=2 Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=2000 State=UNKNOWN"; done
    echo "PartitionName=test Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP"
  } > "$SLURM_CONF"
  bash "$CLUSTER_SH" exec node1 slurmctld -i
  # each node has its own /tmp, as real nodes do (Slurm's PMIx plugin makes per-node directories
  # of the same name there); the tests' files live elsewhere on the shared file system
  for i in 1 2; do
    mkdir -p "$SL/spool/node$i" "$SL/tmp-node$i"; chmod 1777 "$SL/tmp-node$i"
    bash "$CLUSTER_SH" exec "node$i" unshare --mount --propagation private -- \
      bash -c 'mount --bind "$1" /tmp && exec slurmd' slurmd "$SL/tmp-node$i"
  done
  for _ in $(seq 60); do
    [ "$(bash "$CLUSTER_SH" exec node1 sinfo -h -o '%T %D' 2>/dev/null)" = "idle 2" ] && return 0
    sleep 0.5
  done
  echo "slurm_up: the nodes did not come up"; bash "$CLUSTER_SH" exec node1 sinfo; tail -5 "$SL"/*.log; return 1
}
slurm() { bash "$CLUSTER_SH" exec node1 "$@"; }  # a Slurm command from node1
job_state() { slurm scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
wait_job() {  # JOBID SECONDS: until the job has ended; echoes its final state
  local s
  for _ in $(seq $(( $2 * 2 ))); do
    s=$(job_state "$1")
    case $s in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|PREEMPTED|OUT_OF_MEMORY) echo "$s"; return 0 ;; esac
    sleep 0.5
  done
  echo "${s:-UNKNOWN}"
}
