"""`aiprov sandbox up --ssh`: the key, the inventory, and a real SSH run."""

import json
import os
import stat
import subprocess

import pytest
import yaml
from click.testing import CliRunner

from aiprov import inventory, sandbox
from aiprov.cli import main


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "aiprov" / "sandbox"


def test_key_is_made_once_and_private(state):
    key = sandbox.ssh_key()
    assert key == state / "id_ed25519"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.with_suffix(".pub").read_text().startswith("ssh-ed25519 ")
    first = key.read_text()
    assert sandbox.ssh_key().read_text() == first


def test_ssh_inventory_reaches_hosts_at_their_addresses(state, tmp_path):
    hosts = [
        sandbox.SandboxHost("fleet-1", "running", "img", "10.88.0.7"),
        sandbox.SandboxHost("fleet-2", "running", "img", "10.88.0.8"),
    ]
    known_hosts = state / "fleet.known_hosts"
    inventory_dir = tmp_path / "inv"
    (inventory_dir / "group_vars").mkdir(parents=True)
    (inventory_dir / "group_vars" / "sandbox.yml").write_text("aiprov_gpu_family: cpu\n")
    sandbox.write_ssh_inventory(hosts, inventory_dir, known_hosts, prefix="fleet")

    written = yaml.safe_load((inventory_dir / "hosts.yml").read_text())
    group = written["all"]["children"]["sandbox"]
    assert group["hosts"] == {
        "fleet-1": {"ansible_host": "10.88.0.7"},
        "fleet-2": {"ansible_host": "10.88.0.8"},
    }
    assert group["vars"]["ansible_connection"] == "ssh"
    assert group["vars"]["ansible_user"] == "root"
    assert group["vars"]["ansible_ssh_pipelining"] is True
    assert group["vars"]["ansible_ssh_private_key_file"] == str(state / "id_ed25519")
    args = group["vars"]["ansible_ssh_common_args"]
    assert "ControlPersist=" in args and f"UserKnownHostsFile={known_hosts}" in args
    loaded = inventory.load(inventory_dir)
    assert loaded.host("fleet-2").vars["aiprov_gpu_family"] == "cpu"


def test_enable_ssh_records_host_keys(state, monkeypatch):
    calls = []

    def fake_podman(*args, check=True, stdin=None):
        calls.append((args, stdin))
        return subprocess.CompletedProcess(args, 0, f"ssh-ed25519 KEY-{args[2]} root@h\n", "")

    monkeypatch.setattr(sandbox, "run_podman", fake_podman)
    monkeypatch.setattr(sandbox, "_wait_for_port", lambda name, address, port: None)
    hosts = [
        sandbox.SandboxHost("f-1", "running", "img", "10.0.0.1"),
        sandbox.SandboxHost("f-2", "running", "img", "10.0.0.2"),
    ]
    known_hosts = sandbox.enable_ssh(hosts, prefix="f")
    assert known_hosts.read_text() == (
        "10.0.0.1 ssh-ed25519 KEY-f-1\n10.0.0.2 ssh-ed25519 KEY-f-2\n"
    )
    # The public key goes in on stdin, never on a command line.
    public_key = (state / "id_ed25519.pub").read_text()
    assert all(stdin == public_key for _, stdin in calls)
    assert all(public_key.split()[1] not in " ".join(args) for args, _ in calls)


def test_enable_ssh_refuses_a_host_without_address(state):
    with pytest.raises(sandbox.SandboxError, match="no address"):
        sandbox.enable_ssh([sandbox.SandboxHost("f-1", "exited", "img", "")], prefix="f")


def test_status_keeps_to_its_prefix(monkeypatch):
    listing = [
        {"Names": ["aiprov-sandbox-1"], "State": "exited", "Image": "i"},
        {"Names": ["aiprov-mol-fleet-1"], "State": "exited", "Image": "i"},
    ]

    def fake_podman(*args, check=True, stdin=None):
        return subprocess.CompletedProcess(args, 0, json.dumps(listing), "")

    monkeypatch.setattr(sandbox, "run_podman", fake_podman)
    assert [h.name for h in sandbox.status()] == ["aiprov-sandbox-1"]
    assert [h.name for h in sandbox.status("aiprov-mol-fleet")] == ["aiprov-mol-fleet-1"]


def test_cli_passes_ssh(monkeypatch, tmp_path):
    seen = {}

    def fake_up(count, os_name, inventory_dir, ssh=False, services=False, bundle=None):
        seen.update(count=count, ssh=ssh, services=services)
        return []

    monkeypatch.setattr(sandbox, "up", fake_up)
    result = CliRunner().invoke(
        main, ["sandbox", "up", "--hosts", "2", "--ssh", "--inventory", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert seen == {"count": 2, "ssh": True, "services": False}
    result = CliRunner().invoke(main, ["sandbox", "up", "--services", "--inventory", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen == {"count": 1, "ssh": False, "services": True}


@pytest.mark.sandbox
def test_real_ssh_hosts_answer_with_their_recorded_keys(podman_image, state, tmp_path):
    """Two hosts over SSH with strict host key checking; `up` again changes nothing.

    A full bootstrap over SSH runs in test_fault_drills.py (its fixture).
    """
    prefix = f"aiprov-mol-sshtest{os.getpid()}"
    inventory_dir = tmp_path / "inv"
    try:
        hosts = sandbox.up(2, "debian12", inventory_dir, ssh=True, prefix=prefix)
        assert [h.name for h in hosts] == [f"{prefix}-1", f"{prefix}-2"]
        key = state / "id_ed25519"
        known_hosts = state / f"{prefix}.known_hosts"
        for host in hosts:
            probe = subprocess.run(
                ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                 "-o", f"UserKnownHostsFile={known_hosts}", f"root@{host.address}", "hostname"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert probe.returncode == 0, probe.stderr
            assert probe.stdout.strip() == host.name
        # Each host made its own host key.
        assert len({line.split()[2] for line in known_hosts.read_text().splitlines()}) == 2

        # Up again is a no-op for running hosts and keeps SSH working.
        again = sandbox.up(2, "debian12", inventory_dir, ssh=True, prefix=prefix)
        assert [h.address for h in again] == [h.address for h in hosts]
        assert known_hosts.read_text().count("ssh-ed25519") == 2
    finally:
        sandbox.down(prefix)
    assert sandbox.status(prefix) == []
