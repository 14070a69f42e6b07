#!/usr/bin/env bash
# Read-only checks on a real NVIDIA GPU host that has no network: run from a
# copy of this repository with the wheels aiprov needs in $WHEELS. Writes its
# results to $OUT. Changes nothing on the host: the wheels are unpacked under
# a temporary directory, the probe only reads, the driver role runs in --check.
#
#   WHEELS=.h100-wheels OUT=/tmp/out bash tests/gpu_host/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${WHEELS:?directory of wheels (ansible-core, ansible-runner, click, rich and their deps)}"
: "${OUT:?where to write the results}"
. tests/gpu_host/setup.sh

{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; uname -r; } >"$OUT/host.txt" 2>&1
sh cli/aiprov/data/doctor-probe.sh >"$OUT/probe.txt" 2>"$OUT/probe.stderr"
python3 -m aiprov doctor -i "$site/inventory.yml" --json >"$OUT/doctor.json" 2>"$OUT/doctor.stderr"
echo "doctor --json exit: $?" >>"$OUT/exits.txt"
COLUMNS=100 python3 -m aiprov doctor -i "$site/inventory.yml" >"$OUT/doctor.txt" 2>&1
echo "doctor exit: $?" >>"$OUT/exits.txt"
ansible-playbook -i "$site/inventory.yml" --check tests/gpu_host/driver_check.yml >"$OUT/driver_check.txt" 2>&1
echo "driver role --check exit: $?" >>"$OUT/exits.txt"
cat "$OUT/exits.txt"
