#!/usr/bin/env bash
# Installs what the Slurm cluster test needs from Debian 12, if missing: slurm-wlm (slurmctld,
# slurmd, sbatch, scontrol, sacct) and munge (its authentication). Services are not started here:
# tests/cluster/slurm.sh starts its own daemons inside the test cluster's namespaces.
set -euo pipefail
bash "$(dirname "$0")/../../launch/apt_need.sh" slurm-wlm munge
command -v slurmctld slurmd sbatch scontrol munged >/dev/null
