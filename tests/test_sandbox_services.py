"""`aiprov sandbox up --services`: the inventory of the CPU services profile."""

import shutil
import socket
import stat
from pathlib import Path

import pytest
import yaml

from aiprov import inventory, sandbox, validate

SANDBOX = Path(__file__).resolve().parent.parent / "inventories" / "sandbox"


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "aiprov" / "sandbox"


@pytest.fixture
def mirror(monkeypatch):
    """Listeners on the mirror's ports, with the gateway pointed at them."""
    monkeypatch.setattr(sandbox, "gateway", lambda: "127.0.0.1")
    listeners = []
    for port in (sandbox.MIRROR_PYPI_PORT, sandbox.MIRROR_HUB_PORT):
        listener = socket.create_server(("127.0.0.1", port))
        listeners.append(listener)
    yield
    for listener in listeners:
        listener.close()


def test_services_inventory_loads_validates_and_keeps_the_key_out(state, mirror, tmp_path):
    inventory_dir = tmp_path / "sandbox"
    shutil.copytree(SANDBOX / "group_vars", inventory_dir / "group_vars")
    sandbox.write_inventory(
        ["aiprov-sandbox-1"], inventory_dir, services_vars=sandbox._services_vars("debian12")
    )

    loaded = inventory.load(inventory_dir)
    assert validate.validate(loaded, str(inventory_dir)) == []
    host = loaded.host("aiprov-sandbox-1").vars
    assert (
        host["python_env_pip_index_url"] == f"http://127.0.0.1:{sandbox.MIRROR_PYPI_PORT}/simple/"
    )
    assert host["models_hf_endpoint"] == f"http://127.0.0.1:{sandbox.MIRROR_HUB_PORT}"
    assert [s["served_name"] for s in host["vllm_service_services"]] == ["tiny-chat", "minilm"]
    assert host["funasr_service_device"] == "cpu"
    # Hosts outside the group keep the light default (no services).
    assert "vllm_service_services" not in yaml.safe_load(
        (SANDBOX / "group_vars" / "sandbox.yml").read_text()
    )

    key_file = state / "api-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    assert len(key) >= 24 and key not in (inventory_dir / "hosts.yml").read_text()
    assert sandbox.api_key().read_text() == key  # made once


def test_services_need_debian12(state, mirror):
    with pytest.raises(sandbox.SandboxError, match="--services needs --os debian12"):
        sandbox._services_vars("debian13")


def test_services_refuse_without_the_mirror(state, monkeypatch):
    monkeypatch.setattr(sandbox, "gateway", lambda: "127.0.0.1")
    monkeypatch.setattr(sandbox, "MIRROR_PYPI_PORT", _free_port())
    with pytest.raises(sandbox.SandboxError, match=r"scripts/sandbox-mirror\.sh up"):
        sandbox._services_vars("debian12")


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]
