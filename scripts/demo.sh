#!/usr/bin/env bash
# The main job on the embedded default: start a sandbox host, bootstrap it
# with aiprov, run it again to show nothing changes, and show what it serves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/cli/aiprov/data/containers.conf}

aiprov sandbox up --hosts "${AIPROV_SANDBOX_HOSTS:-1}" --os debian12
aiprov validate -i inventories/sandbox
aiprov bootstrap -i inventories/sandbox
echo "== second run: expect changed=0 everywhere"
aiprov bootstrap -i inventories/sandbox
echo "== the sandbox hosts"
aiprov sandbox status
