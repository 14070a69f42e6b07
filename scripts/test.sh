#!/usr/bin/env bash
# The whole test suite: lint, unit tests, and every Molecule scenario against
# real systemd hosts (podman containers). Installs what it needs first.
# MOLECULE_SCENARIOS="base docker" runs a subset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/cli/aiprov/data/containers.conf}
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

echo "== ruff"
ruff check cli tests bench scripts
ruff format --check cli tests bench scripts

echo "== ansible-lint (production profile)"
ansible-lint --profile production playbooks roles molecule

echo "== pytest"
pytest -q

scenarios=${MOLECULE_SCENARIOS:-$(ls molecule)}
for scenario in $scenarios; do
  echo "== molecule test -s $scenario"
  start=$SECONDS
  molecule test -s "$scenario"
  echo "== molecule $scenario: $((SECONDS - start)) s"
done
