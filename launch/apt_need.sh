#!/usr/bin/env bash
# Installs the named Debian packages that are missing (apt-get update first, only if one is).
# Usage: bash launch/apt_need.sh PKG...   (used by launch/setup.sh and tests/cluster/setup_slurm.sh)
set -euo pipefail
missing=()
for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -gt 0 ] || exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
