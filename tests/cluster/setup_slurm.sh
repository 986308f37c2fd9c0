#!/usr/bin/env bash
# Installs what the Slurm cluster test needs from Debian 12, if missing: slurm-wlm (slurmctld,
# slurmd, sbatch, scontrol, sacct) and munge (its authentication). Services are not started here:
# tests/cluster/slurm.sh starts its own daemons inside the test cluster's namespaces.
set -euo pipefail
PKGS=(slurm-wlm munge)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v slurmctld slurmd sbatch scontrol munged >/dev/null
