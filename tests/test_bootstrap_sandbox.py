"""Real runs of `aiprov bootstrap` against podman sandbox hosts with systemd.

Exit codes (0, 2 for a failed task, 3 for an unreachable host), --check
leaving the host untouched, and secrets kept out of argv and run artifacts.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.sandbox


def podman(*args, check=True):
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def host(podman_image, tmp_path):
    name = f"aiprov-test-{os.getpid()}"
    podman("rm", "-f", name, check=False)
    podman(
        "run",
        "-d",
        "--name",
        name,
        "--hostname",
        name,
        "--systemd",
        "always",
        podman_image,
        "/sbin/init",
    )
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump(
            {"all": {"hosts": {name: {"ansible_connection": "containers.podman.podman"}}}}
        )
    )
    yield name, inventory
    podman("rm", "-f", "-t", "2", name, check=False)


def aiprov(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "aiprov", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=900,
    )


def test_check_mode_changes_nothing_then_a_failed_task_exits_2(host):
    name, inventory = host
    result = aiprov("bootstrap", "-i", str(inventory), "--tags", "base", "--check", "--diff")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Recap" in result.stdout
    assert (
        podman("exec", name, "test", "-e", "/etc/sysctl.d/90-aiprov.conf", check=False).returncode
        == 1
    )

    result = aiprov(
        "bootstrap", "-i", str(inventory), "--tags", "base",
        "-e", '{"base_extra_packages": ["aiprov-no-such-package"]}',
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "FAILED" in result.stdout and "aiprov-no-such-package" in result.stdout
    assert "Install base packages" in result.stdout


def test_stopped_host_is_unreachable_exit_3(host):
    name, inventory = host
    podman("stop", "-t", "2", name)
    result = aiprov("bootstrap", "-i", str(inventory), "--tags", "base")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "UNREACHABLE" in result.stdout and name in result.stdout


def test_secrets_stay_out_of_artifacts(host, tmp_path):
    _, inventory = host
    runs = tmp_path / "runs"
    secret_var, secret_env = "sk-aiprov-extra-var-0451", "hf_aiprov_env_token_0452"
    result = aiprov(
        "bootstrap", "-i", str(inventory), "--tags", "base", "--check",
        "-e", f"vllm_service_api_key={secret_var}",
        env={"AIPROV_RUNS_DIR": str(runs), "HF_TOKEN": secret_env},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    files = [p for p in runs.rglob("*") if p.is_file()]
    assert any(p.name == "command" for p in files)
    for path in files:
        text = path.read_text(errors="replace")
        assert secret_var not in text, path
        assert secret_env not in text, path
    assert secret_var not in result.stdout + result.stderr
