#!/usr/bin/env bash
# The whole test suite: lint, unit tests, and every Molecule scenario against
# real systemd hosts (podman containers). Installs what it needs first.
#   MOLECULE_SCENARIOS="base docker"   run a subset of the scenarios (one lane)
#   AIPROV_TEST_BUDGET=5000            seconds for the whole run (CI stops at 5400):
#                                      a scenario whose usual time no longer fits
#                                      is reported as skipped, never silently dropped
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/cli/aiprov/data/containers.conf}
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1

echo "== ruff"
ruff check cli tests bench scripts roles
ruff format --check cli tests bench scripts roles

echo "== ansible-lint (production profile)"
ansible-lint --profile production playbooks roles molecule

echo "== pytest"
pytest -q

# Scenarios run in two lanes at once: on 2 cores one lane compiles or
# installs while the other waits on downloads. Scenarios that share a port
# on this machine (vllm_service, vllm_multinode and funasr_service: their
# package mirror) stay in one lane. Seconds each took on an idle 2-core machine, used only
# to decide what still fits the budget.
# "demo" is not a scenario: it is the README's main command (scripts/demo.sh)
# end to end, offline: the sandbox's bundle built, verified and served, a
# sandbox host with the services profile on a network that reaches only the
# bundle, bootstrap, a re-run that must change nothing, a chat completion, an
# embedding and a transcription, status, the SLO check and the secret scan,
# then its documented teardown. It has its own networks and ports, so it runs
# beside the scenarios; it goes last in lane A.
declare -A usual=(
  [base]=90 [nouveau]=300 [python_env]=300 [models]=420 [docker]=300 [dify]=420
  [mineru]=240 [funasr_service]=420 [vllm_service]=900 [vllm_multinode]=900 [nvidia_driver]=1200 [cuda_toolkit]=900
  [service_unit]=180 [bundle_host]=480
  [demo]=1200
)
lane_a="base nouveau python_env service_unit dify mineru nvidia_driver bundle_host demo"
lane_b="vllm_service vllm_multinode funasr_service cuda_toolkit models docker"
if [[ -n "${MOLECULE_SCENARIOS:-}" ]]; then
  lane_a=$MOLECULE_SCENARIOS lane_b=""
else
  for dir in molecule/*/; do  # a scenario in neither lane still runs, last
    name=$(basename "$dir")
    [[ " $lane_a $lane_b " == *" $name "* ]] || lane_a+=" $name"
  done
fi

budget=${AIPROV_TEST_BUDGET:-5000}
results=$(mktemp -d)
demo() {
  local rc=0
  bash scripts/demo.sh || rc=$?
  bash scripts/demo.sh down || true
  return "$rc"
}
run_one() {
  if [[ $1 == demo ]]; then demo; else molecule test -s "$1"; fi
}
run_lane() {
  local scenario need start
  for scenario in "$@"; do
    need=${usual[$scenario]:-300}
    if ((SECONDS + need > budget)); then
      echo "skipped $scenario (its usual ${need} s no longer fit the ${budget} s budget)" >>"$results/summary"
      continue
    fi
    start=$SECONDS
    if run_one "$scenario" >"$results/$scenario.log" 2>&1; then
      echo "passed $scenario $((SECONDS - start)) s" >>"$results/summary"
    else
      echo "failed $scenario $((SECONDS - start)) s" >>"$results/summary"
      [[ $scenario == demo ]] || molecule destroy -s "$scenario" >/dev/null 2>&1 || true
    fi
    echo "== molecule $scenario done ($((SECONDS - start)) s)"
  done
}

echo "== molecule, lane A: $lane_a"
echo "== molecule, lane B: $lane_b"
# shellcheck disable=SC2086  # the lanes are word lists
run_lane $lane_a &
lane_a_pid=$!
# shellcheck disable=SC2086
run_lane $lane_b
wait "$lane_a_pid"

for log in "$results"/*.log; do
  name=$(basename "$log" .log)
  if grep -q "^failed $name " "$results/summary"; then
    echo "== molecule $name: FAILED, its log:"
    cat "$log"
  else
    echo "== molecule $name: last lines of its log"
    tail -n 15 "$log"
  fi
done
echo "== molecule summary"
sort "$results/summary"
echo "== total: ${SECONDS} s"
count() { grep -c "^$1 " "$results/summary" || true; }
echo "molecule: $(count passed) passed, $(count failed) failed, $(count skipped) skipped"
[[ $(count failed) -eq 0 ]]
