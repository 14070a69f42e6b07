#!/usr/bin/env bash
# The main job on the embedded default, offline: build the sandbox's bundle
# (aiprov bundle build, verify, serve), start a sandbox host on a network that
# reaches only the bundle's servers, bootstrap it with aiprov, run it again to
# show nothing changes, and ask its model services one question each.
#
#   bash scripts/demo.sh          run it (from any state: fresh, again, after down)
#   bash scripts/demo.sh down     stop everything it started: the sandbox hosts,
#                                 the bundle's servers and the networks
#
#   AIPROV_SANDBOX_HOSTS=2   more hosts (each runs the whole CPU profile)
#   AIPROV_SANDBOX_INVENTORY=DIR   write and use this inventory (default: the
#                            state dir, so the checkout stays clean)
set -euo pipefail
cd "$(dirname "$0")/.."
state=${XDG_STATE_HOME:-$HOME/.local/state}/aiprov/demo
teardown="bash scripts/demo.sh down"

if [[ ${1:-} == down ]]; then
  source .venv/bin/activate
  export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/cli/aiprov/data/containers.conf}
  aiprov sandbox down
  bash scripts/sandbox-mirror.sh down
  echo "the sandbox hosts, their networks and the bundle's servers are stopped"
  exit 0
fi
[[ $# -eq 0 ]] || { echo "usage: $0 [down]" >&2; exit 4; }

phases=()
phase() {  # phase NAME COMMAND...: run it, print its time and keep it for the summary
  local name=$1 start=$SECONDS
  shift
  echo "== $name"
  "$@"
  phases+=("$(printf '%-34s %5d s' "$name" $((SECONDS - start)))")
  echo "== $name: $((SECONDS - start)) s"
}

# On failure, before anything is torn down: what each host's failed units say,
# so a failure explains itself in a CI log.
diagnose() {
  local rc=$? host unit
  ((rc != 0)) || return 0
  echo "== the demo failed (exit $rc); the sandbox hosts' units that are not running:"
  for host in $(podman ps --filter label=aiprov.sandbox --format '{{.Names}}' 2>/dev/null); do
    for unit in $(podman exec "$host" systemctl list-units --all --plain --no-legend \
      'aiprov-*' nginx.service 2>/dev/null | awk '$3 != "active" {print $1}'); do
      echo "---- $host: systemctl status $unit"
      podman exec "$host" systemctl status --no-pager --lines 0 "$unit" || true
      echo "---- $host: journalctl -u $unit (last 80 lines)"
      podman exec "$host" journalctl --no-pager -n 80 -u "$unit" || true
    done
  done
  echo "== stop what the demo started: $teardown"
}
trap diagnose EXIT

# The demo's hosts run Debian 12 only: no other image is built for it.
phase "setup (packages, venv, image)" env AIPROV_IMAGES="${AIPROV_IMAGES:-bookworm}" bash scripts/setup.sh
source .venv/bin/activate
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/cli/aiprov/data/containers.conf}

phase "bundle (build, verify, serve)" bash scripts/sandbox-mirror.sh up
# A hub token as a fleet behind a gated hub would set: the models role hands it
# to the hub client on stdin; the scan at the end proves it went nowhere else.
HF_TOKEN=hf_sandbox_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
export HF_TOKEN
# The inventory lives in the state dir, made afresh from the tracked example's
# group_vars; this demo's runs alone in their dir, so the scan reads what
# these runs left.
inventory=${AIPROV_SANDBOX_INVENTORY:-$state/inventory}
if [[ -z ${AIPROV_SANDBOX_INVENTORY:-} ]]; then
  rm -rf "$inventory" && mkdir -p "$inventory"
  cp -r inventories/sandbox/group_vars "$inventory/"
fi
export AIPROV_RUNS_DIR=${AIPROV_RUNS_DIR:-$state/runs/$(date +%Y%m%d-%H%M%S)}
hosts=${AIPROV_SANDBOX_HOSTS:-1}
phase "sandbox hosts" aiprov sandbox up --hosts "$hosts" --os debian12 --services --inventory "$inventory"
phase "validate" aiprov validate -i "$inventory"
phase "bootstrap" aiprov bootstrap -i "$inventory"
phase "bootstrap again (changed=0)" aiprov bootstrap -i "$inventory"
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
smoke() {
  for host in $(seq 1 "$hosts"); do python scripts/sandbox_smoke.py "aiprov-sandbox-$host"; done
}
phase "what the sandbox serves" smoke
# The fleet's table (from the host's Prometheus, through the front), then the
# acceptance: AIPerf drives each service at the load its slo: names and the
# check exits non-zero on a missed target; its artifacts land in the runs
# directory, which the secret scan below reads.
# status reads the host's Prometheus through the front (the scrape key).
fleet_status() {
  aiprov status -i "$inventory"
  aiprov status -i "$inventory" --json | python -c '
import json, sys
rows = json.load(sys.stdin)["services"]
other = [r["service"] for r in rows if r["source"] != "prometheus"]
sys.exit(f"not read from Prometheus: {other}" if other else 0)'
}
phase "status (from Prometheus)" fleet_status
phase "check (SLO acceptance)" aiprov check -i "$inventory" -o "$AIPROV_RUNS_DIR/check"
scan() {
  for host in $(seq 1 "$hosts"); do python scripts/sandbox_secret_scan.py "aiprov-sandbox-$host"; done
}
phase "secret scan (API key, hub token)" scan

echo "== phases"
printf '%s\n' "${phases[@]}"
echo "total                              $(printf '%5d' "$SECONDS") s"
echo "inventory: $inventory"
echo "runs: $AIPROV_RUNS_DIR"
echo "stop everything the demo started: $teardown"
