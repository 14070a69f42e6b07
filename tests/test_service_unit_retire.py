"""service_unit's retirement (tasks/retire.yml): which of the caller's unit
files go, judged by the unit names in service_unit_units (a vLLM service with
replicas owns several), and which globs the block accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ROLE = REPO / "roles" / "service_unit"


def _play(tmp_path: Path, tasks: list, variables: dict) -> dict:
    (tmp_path / "play.yml").write_text(
        yaml.safe_dump(
            [{"hosts": "localhost", "gather_facts": False, "vars": variables, "tasks": tasks}]
        )
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "play.yml"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env=dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json"),
    )  # fmt: skip
    return {"rc": result.returncode, "out": json.loads(result.stdout)}


def test_stale_units_are_those_the_list_does_not_name(tmp_path):
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    found = [
        "aiprov-vllm-chat.service", "aiprov-vllm-chat-1.service", "aiprov-vllm-chat-2.service",
        "aiprov-vllm-old.service", "aiprov-vllm-embedding.service",
    ]  # fmt: skip
    variables = {
        "_service_unit_stale": role_vars["_service_unit_stale"],
        "_service_unit_found": {"files": [{"path": f"/etc/systemd/system/{n}"} for n in found]},
        # chat now has one replica less; old is gone; embedding stays.
        "service_unit_units": [
            {"name": n} for n in ("aiprov-vllm-chat", "aiprov-vllm-chat-1", "aiprov-vllm-embedding")
        ],
    }  # fmt: skip
    result = _play(tmp_path, [{"ansible.builtin.debug": {"var": "_service_unit_stale"}}], variables)
    assert result["rc"] == 0, result["out"]
    (host,) = result["out"]["plays"][0]["tasks"][0]["hosts"].values()
    assert host["_service_unit_stale"] == ["aiprov-vllm-chat-2.service", "aiprov-vllm-old.service"]


@pytest.mark.parametrize(
    ("glob", "accepted"),
    [
        ("aiprov-vllm-*.service", True),
        ("aiprov-dify*.service", True),
        ("*.service", False),
        ("aiprov-*", False),
        ("sshd*.service", False),
        ("aiprov-vllm-*.service\nx", False),
        ("../aiprov-*.service", False),
    ],
)
def test_only_a_glob_of_aiprov_units_is_accepted(tmp_path, glob, accepted):
    tasks = yaml.safe_load((ROLE / "tasks" / "retire.yml").read_text())
    check = next(task for task in tasks if task["name"] == "Check the retirement pattern")
    result = _play(tmp_path, [check], {"service_unit_retire_glob": glob})
    assert (result["rc"] == 0) is accepted, result["out"]
