"""One rule set: `aiprov validate`, every aiprov run and the playbooks' own preflight
(playbooks/action_plugins/aiprov_validate.py) refuse the same inventories with the
same `FILE: KEY: message` lines.

The preflight runs for real in ansible-playbook, alone (--tags aiprov_validate, no
fact gathering), with the inventory sources aiprov passes; it contacts no host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiprov import inventory, paths, runner, validate
from aiprov.cli import main
from aiprov.problems import InputError

REPO = Path(__file__).resolve().parent.parent
BROKEN = sorted(p for p in (REPO / "tests" / "broken").iterdir() if (p / "expected.txt").is_file())
EXAMPLES = sorted(p for p in paths.profiles_dir().iterdir() if p.is_dir())
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def preflight(inventory: Path, playbook: str = "bootstrap", *extra: str):
    """ansible-playbook with only the preflight play: (rc, its problem lines or None when
    the inventory has no host to run it for, output)."""
    env = dict(
        os.environ,
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_GATHERING="explicit",
        ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true",
        ANSIBLE_LOCALHOST_WARNING="false",
    )
    env.pop("AIPROV_VALIDATED", None)
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(paths.families_inventory()), "-i", str(inventory),
         str(paths.playbook(playbook)), "--tags", "aiprov_validate", *extra],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    output = result.stdout + result.stderr
    try:
        plays = json.loads(result.stdout)["plays"]
    except (json.JSONDecodeError, KeyError):
        return result.returncode, [], output  # Ansible refused the inventory itself
    if not plays[0]["tasks"]:
        return result.returncode, None, output  # no host: nothing runs, nothing is touched
    task = plays[0]["tasks"][0]
    assert task["task"]["name"] == runner.PREFLIGHT_TASK
    found = next(iter(task["hosts"].values()))
    assert "UNREACHABLE" not in output
    return result.returncode, found.get("problems", []), output


def validate_lines(inventory_path: Path, *extra: str) -> tuple[int, list[str]]:
    """`aiprov validate`'s exit code and the problems it prints (one each, as str(problem))."""
    result = CliRunner().invoke(main, ["validate", "-i", str(inventory_path), *extra])
    try:
        problems = validate.validate(inventory.load(inventory_path))
    except InputError as error:
        problems = error.problems
    return result.exit_code, [str(p) for p in problems]


@pytest.fixture(scope="module")
def corpus_preflight(tmp_path_factory) -> dict[str, dict]:
    """The preflight's result for every broken inventory, from one ansible-playbook run
    (a task per inventory: one process instead of one per case)."""
    play = [{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{
            "name": runner.PREFLIGHT_TASK, "aiprov_validate": {"inventory": "{{ item }}"},
            "loop": [str(case) for case in BROKEN], "ignore_errors": True,
        }],
    }]  # fmt: skip
    playbook = tmp_path_factory.mktemp("corpus") / "corpus.yml"
    playbook.write_text(json.dumps(play))
    env = dict(
        os.environ,
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_ACTION_PLUGINS=str(paths.share_dir() / "playbooks" / "action_plugins"),
        AIPROV_VLLM_API_KEY="test-key",  # as conftest sets it, which runs after this fixture
    )
    env.pop("AIPROV_VALIDATED", None)
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, str(playbook)], capture_output=True, text=True, check=False, env=env
    )
    task = json.loads(result.stdout)["plays"][0]["tasks"][0]
    return {item["item"]: item for item in task["hosts"]["localhost"]["results"]}


@pytest.mark.parametrize("case", BROKEN, ids=lambda p: p.name)
def test_a_broken_inventory_is_refused_alike(case, corpus_preflight):
    expected = (case / "expected.txt").read_text().strip()
    code, lines = validate_lines(case)
    found = corpus_preflight[str(case)]
    assert bool(found.get("failed")) == (code == runner.EXIT_BAD_INPUT), found
    assert found["problems"] == lines
    assert any(expected in " ".join(line.split()) for line in found["problems"])


@pytest.mark.parametrize("case", ["ports-collide", "invalid-yaml-hosts", "vllm-without-api-key"])
def test_the_bootstrap_playbook_refuses_it_before_any_host(case):
    """The real playbook with the sources aiprov passes: its first play stops the run."""
    code, lines = validate_lines(REPO / "tests" / "broken" / case)
    rc, problems, output = preflight(REPO / "tests" / "broken" / case)
    assert code == runner.EXIT_BAD_INPUT
    assert rc != 0, output[-3000:]
    if problems:
        assert problems == lines
    else:  # Ansible itself refuses to load the inventory, before any play
        assert "Validate the inventory" not in output


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_an_example_inventory_passes_both(example):
    code, lines = validate_lines(example, "--strict")
    assert code == 0, lines
    rc, problems, output = preflight(example)
    assert rc == 0, output[-3000:]
    assert problems == []


def test_the_models_playbook_is_guarded_too():
    case = REPO / "tests" / "broken" / "ports-collide"
    rc, problems, _ = preflight(case, "models")
    assert rc != 0
    assert any("8000 is already the port of service 'a'" in line for line in problems)


def test_extra_vars_count_as_in_the_run(tmp_path):
    """A key given with -e satisfies the rule; an empty one given with -e overrides the
    inventory's, as it would in the run."""
    case = REPO / "tests" / "broken" / "vllm-without-api-key"
    rc, problems, _ = preflight(case, "bootstrap", "-e", "vllm_service_api_key=from-e")
    assert rc == 0, problems
    example = paths.profiles_dir() / "qwen3-32b-2x"
    rc, problems, _ = preflight(example, "bootstrap", "-e", "vllm_service_api_key=")
    assert rc != 0
    assert any("vllm_service_api_key: required on host qwen-01" in line for line in problems)


def test_a_run_without_gpu_families_is_warned():
    env_inventory = paths.profiles_dir() / "sandbox"
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_GATHERING="explicit")
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(env_inventory), str(paths.playbook("models")),
         "--tags", "aiprov_validate"],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:]
    assert "does not load" in result.stdout and "gpu_families.yml" in result.stdout


def test_a_prompted_vault_password_reaches_the_preflight(tmp_path):
    """ansible-playbook run by hand with --vault-id default@prompt: the preflight
    checks the vaulted inventory with the password Ansible asked for (it cannot
    ask again), and never shows the decrypted key."""
    from test_vault import API_KEY, PASSWORD, a10_inventory

    inv = a10_inventory(tmp_path)
    env = dict(
        os.environ,
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_GATHERING="explicit",
        ANSIBLE_LOCALHOST_WARNING="false",
    )
    env.pop("AIPROV_VALIDATED", None)
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(paths.families_inventory()), "-i", str(inv),
         str(paths.playbook("bootstrap")), "--tags", "aiprov_validate",
         "--vault-id", "default@prompt"],
        input=PASSWORD + "\n", capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    task = json.loads(result.stdout)["plays"][0]["tasks"][0]
    assert next(iter(task["hosts"].values()))["problems"] == []
    assert API_KEY not in result.stdout + result.stderr
