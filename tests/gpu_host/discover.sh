#!/usr/bin/env bash
# `aiprov init --discover` on a real NVIDIA GPU host, read-only, with a local
# connection (same wheels and setup as run.sh). Writes to $OUT: the probe's
# answer, what discover printed and wrote, and doctor over the written
# inventory and over one that puts the host in the wrong family group.
#
#   WHEELS=.whl OUT=/tmp/out bash tests/gpu_host/discover.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${WHEELS:?directory of wheels (ansible-core, ansible-runner, click, rich and their deps)}"
: "${OUT:?where to write the results}"
. tests/gpu_host/setup.sh
export AIPROV_VLLM_API_KEY=gpu-host-check ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3

sh cli/aiprov/data/doctor-probe.sh >"$OUT/probe.txt" 2>&1
for profile in qwen3-32b-2x a10-4x; do
  echo "\$ aiprov init discovered-$profile --discover --profile $profile --connection local gpu-host"
  COLUMNS=120 python3 -m aiprov init "$site/discovered-$profile" --discover --profile "$profile" \
    --connection local gpu-host 2>&1 | sed "s|$site/||g"
  echo "exit: ${PIPESTATUS[0]}"
  for file in hosts.yml host_vars/gpu-host.yml; do
    echo "--- discovered-$profile/$file"
    cat "$site/discovered-$profile/$file"
  done
done >"$OUT/discover.txt"
{
  echo "\$ aiprov doctor -i discovered-qwen3-32b-2x"
  COLUMNS=120 python3 -m aiprov doctor -i "$site/discovered-qwen3-32b-2x" 2>&1 | sed "s|$site/||g"
  echo "exit: ${PIPESTATUS[0]}"
  # The same host put in group h200 by mistake: doctor names the group and the model.
  mkdir -p "$site/wrong"
  sed 's/^    h100:$/    h200:/' "$site/discovered-qwen3-32b-2x/hosts.yml" >"$site/wrong/hosts.yml"
  echo "\$ aiprov doctor -i wrong   # the host in group h200"
  COLUMNS=200 python3 -m aiprov doctor -i "$site/wrong" 2>&1 | sed "s|$site/||g"
  echo "exit: ${PIPESTATUS[0]}"
} >"$OUT/doctor-family.txt"
cat "$OUT/discover.txt" "$OUT/doctor-family.txt"
