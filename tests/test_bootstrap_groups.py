"""bootstrap.yml's play that sorts hosts: which hosts the GPU and Docker plays take.

Runs that play itself (its one group_by task) on local hosts, then reads the
groups it made, with the variable set in the inventory or by -e as a user
would: the string "false" from `-e aiprov_docker_enabled=false` must count as false.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
INVENTORY = {
    "all": {
        "hosts": {
            "cpu-box": {"aiprov_gpu_family": "cpu"},
            "l20-no-docker": {"aiprov_gpu_family": "l20", "aiprov_docker_enabled": False},
            "a10-box": {"aiprov_gpu_family": "a10"},
        },
        "vars": {"ansible_connection": "local"},
    }
}
GROUPS = ["aiprov_gpu_hosts", "aiprov_cpu_hosts", "aiprov_docker_hosts", "aiprov_no_docker_hosts"]


def groups_after_first_play(tmp_path: Path, *extra: str) -> dict[str, list[str]]:
    plays = yaml.safe_load((REPO / "playbooks" / "bootstrap.yml").read_text())
    sort_play = next(play for play in plays if play["name"] == "Sort hosts by what they need")
    show = {
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [{"ansible.builtin.debug": {"msg": "{{ groups }}"}}],
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
    (tmp_path / "play.yml").write_text(yaml.safe_dump([sort_play, show]))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory.yml", "play.yml",
         "-e", "ansible_python_interpreter={{ ansible_playbook_python }}", *extra],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env=dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOCALHOST_WARNING="false"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    groups = json.loads(result.stdout)["plays"][1]["tasks"][0]["hosts"]["localhost"]["msg"]
    return {name: sorted(groups.get(name, [])) for name in GROUPS}


def test_hosts_split_by_gpu_family_and_docker(tmp_path):
    assert groups_after_first_play(tmp_path) == {
        "aiprov_gpu_hosts": ["a10-box", "l20-no-docker"],
        "aiprov_cpu_hosts": ["cpu-box"],
        "aiprov_docker_hosts": ["a10-box", "cpu-box"],
        "aiprov_no_docker_hosts": ["l20-no-docker"],
    }


@pytest.mark.parametrize("value", ["false", "no"])
def test_docker_off_from_the_command_line(tmp_path, value):
    groups = groups_after_first_play(tmp_path, "-e", f"aiprov_docker_enabled={value}")
    assert groups["aiprov_docker_hosts"] == []
    assert groups["aiprov_no_docker_hosts"] == ["a10-box", "cpu-box", "l20-no-docker"]
