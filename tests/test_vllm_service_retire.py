"""vllm_service retires (stops, disables, removes) units only on a host whose inventory
sets vllm_service_services: with the role's default list, a host whose host_vars file
went missing would otherwise lose every running service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
GUARD = "'vllm_service_services' in hostvars[inventory_hostname]"


def test_retiring_units_needs_the_list_from_the_inventory():
    """The shared block retires; vllm_service only decides that it may, and
    hands it the unit names its list makes (replicas included)."""
    tasks = yaml.safe_load((REPO / "roles/vllm_service/tasks/main.yml").read_text())
    retiring = [task for task in tasks if "retire" in str(task).lower()]
    assert [task["name"] for task in retiring] == ["Retire removed services"]
    (task,) = retiring
    when = task["when"]
    assert GUARD in (when if isinstance(when, list) else [when])
    assert task["ansible.builtin.include_role"] == {
        "name": "service_unit",
        "tasks_from": "retire.yml",
    }
    assert task["vars"]["service_unit_retire_glob"] == "aiprov-vllm-*.service"
    assert "vllm_service_units" in task["vars"]["service_unit_units"]
    # The first thing the role does: GPU memory is free before new services start.
    assert tasks[0] is task


def test_hostvars_holds_the_inventory_value_but_not_the_role_default(tmp_path):
    """The guard's premise, with a role default like vllm_service's."""
    role = tmp_path / "roles" / "r"
    (role / "defaults").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "defaults" / "main.yml").write_text("vllm_service_services: []\n")
    (role / "tasks" / "main.yml").write_text(
        yaml.safe_dump([{"ansible.builtin.debug": {"msg": "{{ " + GUARD + " }}"}}])
    )
    (tmp_path / "play.yml").write_text(
        yaml.safe_dump([{"hosts": "all", "gather_facts": False, "roles": ["r"]}])
    )
    inventory = {
        "hosts": {"unset": {}, "empty": {"vllm_service_services": []}},
        "vars": {"ansible_connection": "local"},
    }
    (tmp_path / "inv.yml").write_text(yaml.safe_dump({"all": inventory}))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inv.yml", "play.yml"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env=dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:]
    hosts = json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]
    assert {name: found["msg"] for name, found in hosts.items()} == {"unset": False, "empty": True}
