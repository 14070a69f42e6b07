# Sourced by run.sh and discover.sh: aiprov and Ansible from the wheels in
# $WHEELS, unpacked under a temporary directory ($site), and an inventory of
# this machine over a local connection ($site/inventory.yml).
# shellcheck shell=bash
site=$(mktemp -d /tmp/aiprov-site.XXXXXX)
trap 'rm -rf "$site"' EXIT
for wheel in "$WHEELS"/*.whl; do python3 -m zipfile -e "$wheel" "$site"; done
mkdir -p "$site/bin"
# Wheels unpacked by hand have no console scripts: ansible-runner calls these.
for tool in ansible:adhoc ansible-playbook:playbook ansible-config:config; do
  printf '#!/bin/sh\nexec python3 -m ansible.cli.%s "$@"\n' "${tool#*:}" >"$site/bin/${tool%%:*}"
  chmod +x "$site/bin/${tool%%:*}"
done
export PYTHONPATH="$site:$PWD/cli" PATH="$site/bin:$PATH"
export ANSIBLE_ROLES_PATH="$PWD/roles" ANSIBLE_LOCAL_TEMP="$site/tmp" ANSIBLE_REMOTE_TEMP="$site/tmp"
export ANSIBLE_NOCOLOR=1 ANSIBLE_CALLBACK_RESULT_FORMAT=yaml AIPROV_RUNS_DIR="$site/runs"
cat >"$site/inventory.yml" <<'INVENTORY'
all:
  hosts:
    gpu-host:
      ansible_connection: local
      ansible_python_interpreter: /usr/bin/python3
INVENTORY

