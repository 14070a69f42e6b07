"""`aiprov sandbox up/status/down` against real podman."""

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
