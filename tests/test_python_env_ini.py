"""python_env's INI change predictor against community.general.ini_file itself.

The role skips ini_file when the filter says a file is settled, so the
filter may only say "settled" where ini_file in check mode reports no change.
Each case runs the real module (check mode, on this machine) for every key.
"""

import base64
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiprov import paths

PLUGIN = paths.roles_dir() / "python_env" / "filter_plugins" / "python_env.py"

KEYS = [
    {
        "section": "global",
        "option": "index-url",
        "value": "http://10.0.0.1/simple/",
        "state": "present",
    },
    {"section": "global", "option": "timeout", "value": "60", "state": "present"},
    {"section": "install", "option": "trusted-host", "value": "", "state": "absent"},
    {
        "section": None,
        "option": "index-url",
        "value": '"http://10.0.0.1/simple/"',
        "state": "present",
    },
]
SETTLED = (
    'index-url = "http://10.0.0.1/simple/"\n\n'
    "[global]\nindex-url = http://10.0.0.1/simple/\ntimeout = 60\ncert = /etc/ca.pem\n\n"
    "[install]\nno-compile = true\n"
)
CASES = {
    "settled, with the user's keys": SETTLED,
    "no trailing newline": SETTLED.rstrip("\n"),
    "other value": SETTLED.replace("timeout = 60", "timeout = 15"),
    "no spaces around =": SETTLED.replace("timeout = 60", "timeout=60"),
    "commented duplicate": SETTLED.replace("timeout = 60\n", "timeout = 60\n# timeout = 5\n"),
    "stale key to remove": SETTLED.replace("no-compile = true", "trusted-host = old.example"),
    "commented key to remove": SETTLED.replace("no-compile = true", "# trusted-host = x"),
    "missing section": 'index-url = "http://10.0.0.1/simple/"\n',
    "duplicate section": SETTLED + "[global]\ntimeout = 60\n",
    "empty": "",
}


@pytest.fixture(scope="module")
def filters():
    spec = importlib.util.spec_from_file_location("python_env_filters", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pending(filters):
    return filters.python_env_ini_pending


def ini_file_changes(path, keys) -> list[bool]:
    """ini_file's own verdict per key, in check mode: would it change the file?"""
    playbook = path.parent / "check.yml"
    playbook.write_text(json.dumps([{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": [{
            "community.general.ini_file": {
                "path": str(path), "section": "{{ item.section }}", "option": "{{ item.option }}",
                "value": "{{ item.value }}", "state": "{{ item.state }}",
            },
            "loop": keys, "check_mode": True, "register": "plan",
        }, {"ansible.builtin.debug": {"msg": "{{ plan.results | map(attribute='changed') }}"}}],
    }]))  # fmt: skip
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(playbook),
         "-e", f"ansible_python_interpreter={sys.executable}"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "json"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = json.loads(result.stdout)["plays"][0]["tasks"]
    return tasks[-1]["hosts"]["localhost"]["msg"]


@pytest.mark.parametrize("name", CASES)
def test_settled_only_where_ini_file_changes_nothing(pending, tmp_path, name):
    path = tmp_path / "pip.conf"
    path.write_text(CASES[name])
    predicted = pending(CASES[name], KEYS)
    for key, changes in zip(KEYS, ini_file_changes(path, KEYS), strict=True):
        if key not in predicted:
            assert not changes, f"{name}: the filter calls {key} settled, ini_file changes it"


def test_a_settled_file_needs_no_module_run(pending):
    assert pending(SETTLED, KEYS) == []
    assert pending(SETTLED.replace("timeout = 60", "timeout = 15"), KEYS) == [KEYS[1]]


def stat(exists: bool, mode: str = "0644", owner: str = "root") -> dict:
    """One item of the role's stat loop, as ansible.builtin.stat registers it."""
    if not exists:
        return {"stat": {"exists": False}}
    return {"stat": {"exists": True, "mode": mode, "pw_name": owner, "gr_name": owner}}


def test_only_files_with_pending_keys_get_a_write(filters):
    files = [
        {"path": "/etc/pip.conf", "keys": KEYS[:3]},
        {"path": "/etc/uv/uv.toml", "keys": KEYS[3:]},
    ]
    reads = [
        {"content": base64.b64encode(SETTLED.encode()).decode()},
        {"skipped": True},
    ]
    changes = filters.python_env_ini_changes(files, [stat(True), stat(False)], reads)
    # pip.conf is settled; uv.toml is missing, so all its keys are pending.
    assert changes == [{"path": "/etc/uv/uv.toml", "exists": False, "pending": KEYS[3:]}]


def test_a_file_not_owned_by_root_gets_every_key(filters):
    files = [{"path": "/etc/pip.conf", "keys": KEYS[:3]}]
    reads = [{"content": base64.b64encode(SETTLED.encode()).decode()}]
    for wrong in (stat(True, mode="0600"), stat(True, owner="pip")):
        changes = filters.python_env_ini_changes(files, [wrong], reads)
        assert changes == [{"path": "/etc/pip.conf", "exists": True, "pending": KEYS[:3]}]
