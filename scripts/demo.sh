#!/usr/bin/env bash
# The main job on the embedded default: start the sandbox's mirror (package
# index and model hub) and a sandbox host, bootstrap it with aiprov, run it
# again to show nothing changes, and ask its model services one question each.
#   AIPROV_SANDBOX_HOSTS=2   more hosts (each runs the whole CPU profile)
#   AIPROV_SANDBOX_INVENTORY=DIR   write and use this inventory (default
#                            inventories/sandbox; the tests use a copy)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/cli/aiprov/data/containers.conf}

bash scripts/sandbox-mirror.sh up
# A hub token as a fleet behind a gated hub would set: the models role hands it
# to the hub client on stdin; the scan at the end proves it went nowhere else.
HF_TOKEN=hf_sandbox_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
export HF_TOKEN
# This demo's runs alone, so the scan reads what these runs left.
inventory=${AIPROV_SANDBOX_INVENTORY:-inventories/sandbox}
export AIPROV_RUNS_DIR=${AIPROV_RUNS_DIR:-$HOME/.local/state/aiprov/demo-runs/$(date +%Y%m%d-%H%M%S)}
aiprov sandbox up --hosts "${AIPROV_SANDBOX_HOSTS:-1}" --os debian12 --services --inventory "$inventory"
aiprov validate -i "$inventory"
aiprov bootstrap -i "$inventory"
echo "== second run: expect changed=0 everywhere"
aiprov bootstrap -i "$inventory"
python - "$AIPROV_RUNS_DIR" <<'PY'
import json, pathlib, sys
run = sorted(pathlib.Path(sys.argv[1]).glob("*-bootstrap"))[-1]
for path in run.glob("artifacts/*/job_events/*.json"):
    event = json.loads(path.read_text())
    if event["event"] == "playbook_on_stats":
        changed = {host: n for host, n in event["event_data"]["changed"].items() if n}
        sys.exit(f"the second run changed something: {changed}" if changed else 0)
sys.exit(f"{run}: no recap")
PY
echo "== the sandbox hosts"
aiprov sandbox status
echo "== what the sandbox serves"
for host in $(seq 1 "${AIPROV_SANDBOX_HOSTS:-1}"); do
  python scripts/sandbox_smoke.py "aiprov-sandbox-$host"
done
echo "== secret hygiene: the API key and the hub token outside their 0600 files"
for host in $(seq 1 "${AIPROV_SANDBOX_HOSTS:-1}"); do
  python scripts/sandbox_secret_scan.py "aiprov-sandbox-$host"
done
