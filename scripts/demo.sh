#!/usr/bin/env bash
# The main job on the embedded default: start the sandbox's mirror (package
# index and model hub) and a sandbox host, bootstrap it with aiprov, run it
# again to show nothing changes, and ask its model services one question each.
#   AIPROV_SANDBOX_HOSTS=2   more hosts (each runs the whole CPU profile)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/cli/aiprov/data/containers.conf}

bash scripts/sandbox-mirror.sh up
aiprov sandbox up --hosts "${AIPROV_SANDBOX_HOSTS:-1}" --os debian12 --services
aiprov validate -i inventories/sandbox
aiprov bootstrap -i inventories/sandbox
echo "== second run: expect changed=0 everywhere"
aiprov bootstrap -i inventories/sandbox
echo "== the sandbox hosts"
aiprov sandbox status
echo "== what the sandbox serves"
for host in $(seq 1 "${AIPROV_SANDBOX_HOSTS:-1}"); do
  python scripts/sandbox_smoke.py "aiprov-sandbox-$host"
done
