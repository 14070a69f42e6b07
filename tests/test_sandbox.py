"""`aiprov sandbox up/status/down` against real podman."""

import http.server
import subprocess
import threading

import pytest
import yaml

from aiprov import inventory, sandbox

pytestmark = pytest.mark.sandbox


def test_up_status_down(podman_image, tmp_path):
    inventory_dir = tmp_path / "sandbox"
    (inventory_dir / "group_vars").mkdir(parents=True)
    (inventory_dir / "group_vars" / "sandbox.yml").write_text("aiprov_gpu_family: cpu\n")
    try:
        hosts = sandbox.up(2, "debian12", inventory_dir)
        assert [h.name for h in hosts] == ["aiprov-sandbox-1", "aiprov-sandbox-2"]
        assert all(h.state == "running" and h.address for h in hosts)

        # Writing the inventory keeps the directory's group_vars, and it loads.
        written = yaml.safe_load((inventory_dir / "hosts.yml").read_text())
        assert set(written["all"]["children"]["sandbox"]["hosts"]) == {h.name for h in hosts}
        loaded = inventory.load(inventory_dir)
        assert loaded.host("aiprov-sandbox-2").vars["aiprov_gpu_family"] == "cpu"

        # Up again is a no-op for running hosts.
        assert [h.name for h in sandbox.up(2, "debian12", inventory_dir)] == [h.name for h in hosts]
    finally:
        removed = sandbox.down()
    assert {"aiprov-sandbox-1", "aiprov-sandbox-2"} <= set(removed)
    assert sandbox.status() == []


def test_unknown_os_is_refused():
    with pytest.raises(sandbox.SandboxError, match="unknown OS"):
        sandbox.build_image("centos7")


def test_the_network_is_there_before_any_host_and_after_down(podman_image, tmp_path):
    """The mirror binds before a host exists, and still answers after down and up.

    A podman bridge exists only while a container uses it; the sandbox makes its
    own network and bridge so a server can bind to the gateway at any time.
    """
    sandbox.down()
    address = sandbox.ensure_network()
    assert sandbox.ensure_network() == address  # idempotent
    assert subprocess.run(["ip", "-o", "addr", "show", "to", address], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    server = http.server.HTTPServer((address, 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://{address}:{server.server_address[1]}/"
    inventory_dir = tmp_path / "sandbox"
    try:
        sandbox.up(1, "debian12", inventory_dir)
        fetch = f"python3 -c \"import urllib.request; urllib.request.urlopen('{url}', timeout=5)\""
        assert (
            sandbox.run_podman(
                "exec", "aiprov-sandbox-1", "sh", "-c", fetch, check=False
            ).returncode
            == 0
        )
        sandbox.down()
        assert sandbox.run_podman("network", "exists", sandbox.NETWORK, check=False).returncode == 1
        # Back up: the same address, and the server bound before answers again.
        sandbox.up(1, "debian12", inventory_dir)
        assert sandbox.ensure_network() == address
        assert (
            sandbox.run_podman(
                "exec", "aiprov-sandbox-1", "sh", "-c", fetch, check=False
            ).returncode
            == 0
        )
    finally:
        sandbox.down()
        server.shutdown()
        server.server_close()
