#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine to run and test aiprov: system
# packages, a virtualenv (.venv) with aiprov and its dev tools, and the
# cached Debian images for sandbox and Molecule hosts. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

# prometheus: promtool, which tests/test_monitoring.py runs on the monitoring role's files;
# dpkg-dev: dpkg-scanpackages, which `aiprov bundle build` writes the APT repository with;
# skopeo and docker-registry: a bundle's images (bundle build copies, bundle serve serves them)
apt_packages=(podman runc debootstrap uidmap iproute2 git git-lfs openssh-client espeak-ng sox prometheus dpkg-dev
  skopeo docker-registry)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
if ((${#missing[@]})); then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The package enables a machine-wide registry on :5000; `aiprov bundle serve` runs its own.
if [[ -d /run/systemd/system ]] && systemctl is-enabled -q docker-registry 2>/dev/null; then
  $sudo systemctl disable --now docker-registry
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'
# `aiprov check`'s load generator (AIPerf), in its own environment inside .venv:
# its pins (numpy, transformers, click...) stay out of aiprov's.
aiperf_version=0.13.0
if ! .venv/loadgen/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('aiperf') != '$aiperf_version')" 2>/dev/null; then
  "$python" -m venv .venv/loadgen
  .venv/loadgen/bin/pip install -q --upgrade pip
  .venv/loadgen/bin/pip install -q "aiperf==$aiperf_version"
fi

export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/cli/aiprov/data/containers.conf}
for suite in ${AIPROV_IMAGES:-bookworm trixie}; do
  bash cli/aiprov/data/build-image.sh "$suite"
done
