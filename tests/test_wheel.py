"""`pip install .` gives an aiprov that finds its Ansible content without a checkout."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
    )
    return next(out.glob("aiprov-*.whl"))


def test_wheel_carries_playbooks_roles_inventories_and_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in [
        "aiprov/share/playbooks/bootstrap.yml",
        "aiprov/share/playbooks/action_plugins/aiprov_validate.py",
        "aiprov/share/roles/base/tasks/main.yml",
        "aiprov/share/roles/base/meta/argument_specs.yml",
        "aiprov/share/gpu_families.yml",
        "aiprov/share/inventories/l20-8x/hosts.yml",
        "aiprov/data/build-image.sh",
        "aiprov/data/fleet_spec.yml",
    ]:
        assert required in names, required
    assert not any(n.startswith(("aiprov/share/tests/", "aiprov/share/cli/")) for n in names)


def test_installed_wheel_uses_its_own_content(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    code = (
        "import aiprov.paths as p, sys; print(p.share_dir()); "
        "sys.exit(0 if p.playbook('bootstrap').is_file() else 1)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(target / "aiprov" / "share")
    validate = subprocess.run(
        [
            sys.executable,
            "-m",
            "aiprov",
            "validate",
            "-i",
            str(target / "aiprov/share/inventories/l20-8x"),
        ],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "AIPROV_VLLM_API_KEY": "k"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
