#!/usr/bin/env bash
# The whole test suite: lint, unit tests, and every Molecule scenario against
# real systemd hosts (podman containers). Installs what it needs first.
#   MOLECULE_SCENARIOS="base docker"   run a subset of the scenarios
#   AIPROV_TEST_BUDGET=5100            seconds for the whole run (CI stops at 5400):
#                                      a scenario whose usual time no longer fits
#                                      is reported as skipped, never silently dropped
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/cli/aiprov/data/containers.conf}
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1

echo "== ruff"
ruff check cli tests bench scripts
ruff format --check cli tests bench scripts

echo "== ansible-lint (production profile)"
ansible-lint --profile production playbooks roles molecule

echo "== pytest"
pytest -q

# Cheap and foundational scenarios first. Seconds each took on an idle
# 2-core machine (see README, "Tests"); used only to decide what still fits.
order=(base nouveau python_env models docker dify mineru funasr_service vllm_service nvidia_driver cuda_toolkit)
declare -A usual=(
  [base]=90 [nouveau]=240 [python_env]=180 [models]=300 [docker]=300 [dify]=240
  [mineru]=180 [funasr_service]=420 [vllm_service]=900 [nvidia_driver]=900 [cuda_toolkit]=600
)
scenarios=${MOLECULE_SCENARIOS:-}
if [[ -z "$scenarios" ]]; then
  scenarios="${order[*]}"
  for dir in molecule/*/; do  # a scenario not in the list still runs, last
    name=$(basename "$dir")
    [[ " ${order[*]} " == *" $name "* ]] || scenarios+=" $name"
  done
fi

budget=${AIPROV_TEST_BUDGET:-5100}
passed=() failed=() skipped=()
for scenario in $scenarios; do
  need=${usual[$scenario]:-300}
  if ((SECONDS + need > budget)); then
    echo "== molecule $scenario: SKIPPED, its usual ${need} s no longer fit the ${budget} s budget"
    skipped+=("$scenario")
    continue
  fi
  echo "== molecule test -s $scenario"
  start=$SECONDS
  if molecule test -s "$scenario"; then
    passed+=("$scenario")
  else
    failed+=("$scenario")
    molecule destroy -s "$scenario" >/dev/null 2>&1 || true
  fi
  echo "== molecule $scenario: $((SECONDS - start)) s"
done

echo "== molecule scenarios passed: ${passed[*]:-none}"
echo "== molecule scenarios failed: ${failed[*]:-none}"
echo "== molecule scenarios skipped: ${skipped[*]:-none}"
echo "== total: ${SECONDS} s"
echo "molecule: ${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
((${#failed[@]} == 0))
