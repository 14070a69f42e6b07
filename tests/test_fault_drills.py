"""Fault drills on two sandbox hosts reached over SSH, as a real fleet is.

Each drill breaks something the way it breaks on real servers (a host lost
mid-run, another process holding the package manager lock) and checks that
aiprov says so clearly, loses nothing, and that the next run converges.
The hosts are started and converged with the CPU roles once for the whole
module, so each drill is a re-run that pays only for what it breaks.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from aiprov import sandbox

pytestmark = pytest.mark.sandbox

PREFIX = "aiprov-mol-drill"
# The roles that run on a CPU-only sandbox host and own files users may own
# too (the GPU driver and CUDA need a GPU host; docker's daemon.json merge is
# proven by molecule/docker, which needs a privileged host).
CPU_ROLES = "base,nouveau,python_env"
# Files a user may have made before aiprov came: each must keep its content,
# and whenever aiprov changes one, a backup beside it holds the original.
USER_FILES = {
    "/etc/modprobe.d/local-user.conf": "options snd_hda_intel power_save=0\n",
    "/etc/modprobe.d/nvidia-blacklists-nouveau.conf": "blacklist nouveau\n",
    "/etc/pip.conf": "[global]\ncert = /etc/ssl/user-ca.pem\n\n[install]\nno-compile = true\n",
    "/etc/uv/uv.toml": 'cache-dir = "/srv/uv-cache"\n',
    "/etc/conda/.condarc": "always_yes: true\nenvs_dirs:\n  - /srv/user-envs\n",
}


def user_content_lost(path: str, before: str, now: str) -> list[str]:
    """What the user wrote that is gone: YAML keys for .condarc, else lines."""
    if path.endswith(".condarc"):
        data = yaml.safe_load(now) or {}
        return [k for k, v in yaml.safe_load(before).items() if data.get(k) != v]
    return [line for line in before.splitlines() if line and line not in now.splitlines()]


LOCK_HOLDER_PID = "/run/aiprov-drill-lock-holder.pid"
# Holds dpkg's frontend lock the way apt does (fcntl), until it is killed.
LOCK_HOLDER = (
    "import fcntl, os, time\n"
    "lock = open('/var/lib/dpkg/lock-frontend', 'w')\n"
    "fcntl.lockf(lock, fcntl.LOCK_EX)\n"
    f"open('{LOCK_HOLDER_PID}', 'w').write(str(os.getpid()))\n"
    "time.sleep(600)\n"
)


def aiprov(inventory, *args, env=None, runs=None):
    extra = {"AIPROV_RUNS_DIR": str(runs)} if runs else {}
    return subprocess.run(
        [sys.executable, "-m", "aiprov", "bootstrap", "-i", str(inventory), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **extra, **(env or {})},
        check=False,
        timeout=600,
    )


def in_host(name, *command, check=True):
    return sandbox.run_podman("exec", name, *command, check=check)


@pytest.fixture(scope="module")
def fleet(podman_image, tmp_path_factory):
    """Two hosts over SSH with the CPU roles converged."""
    inventory_dir = tmp_path_factory.mktemp("drill-inventory")
    (inventory_dir / "group_vars").mkdir()
    (inventory_dir / "group_vars" / "sandbox.yml").write_text("aiprov_gpu_family: cpu\n")
    try:
        hosts = sandbox.up(2, "debian12", inventory_dir, ssh=True, prefix=PREFIX)
        result = aiprov(inventory_dir, "--tags", CPU_ROLES)
        assert result.returncode == 0, result.stdout + result.stderr
        yield inventory_dir, [host.name for host in hosts]
    finally:
        sandbox.down(PREFIX)


def _host_started(runs: Path, host: str) -> bool:
    for path in runs.glob("*/artifacts/run/job_events/*.json"):
        try:
            event = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # still being written
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_start" and data.get("host") == host:
            return True
    return False


def test_host_lost_mid_run_others_finish_and_next_run_converges(fleet, tmp_path):
    inventory_dir, (kept, lost) = fleet
    runs = tmp_path / "runs"
    change = ["--tags", "base", "-e", '{"base_sysctl_extra": {"vm.max_map_count": 524288}}']
    run = subprocess.Popen(
        [sys.executable, "-m", "aiprov", "bootstrap", "-i", str(inventory_dir), *change],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "AIPROV_RUNS_DIR": str(runs)},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not _host_started(runs, lost):
        assert run.poll() is None and time.monotonic() < deadline, "the run never reached the host"
        time.sleep(0.1)
    # Power cut: the whole container dies at once, sshd and its sessions with it.
    sandbox.run_podman("kill", lost)
    output, _ = run.communicate(timeout=300)

    assert run.returncode == 3, output
    assert re.search(rf"UNREACHABLE {lost}\b", output), output
    assert not re.search(rf"(UNREACHABLE|FAILED) {kept}\b", output), output
    sysctl = in_host(kept, "cat", "/etc/sysctl.d/90-aiprov.conf").stdout
    assert "vm.max_map_count = 524288" in sysctl

    # The host comes back (maybe at a new address: `up` rewrites the inventory).
    sandbox.up(2, "debian12", inventory_dir, ssh=True, prefix=PREFIX)
    result = aiprov(inventory_dir, *change)
    assert result.returncode == 0, result.stdout + result.stderr
    sysctl = in_host(lost, "cat", "/etc/sysctl.d/90-aiprov.conf").stdout
    assert "vm.max_map_count = 524288" in sysctl
    assert in_host(lost, "dpkg", "--audit").stdout == ""


def test_package_lock_held_waits_then_fails_clearly_and_corrupts_nothing(fleet):
    inventory_dir, (host, _) = fleet
    in_host(host, "rm", "-f", LOCK_HOLDER_PID)
    sandbox.run_podman("exec", "-d", host, "python3", "-c", LOCK_HOLDER)
    deadline = time.monotonic() + 30
    while in_host(host, "test", "-s", LOCK_HOLDER_PID, check=False).returncode != 0:
        assert time.monotonic() < deadline, "the lock holder did not start"
        time.sleep(0.2)
    holder_pid = in_host(host, "cat", LOCK_HOLDER_PID).stdout.strip()
    install = [
        "--tags", "base", "--limit", host,
        "-e", '{"base_extra_packages": ["file"], "base_package_lock_timeout": 10}',
    ]  # fmt: skip
    try:
        started = time.monotonic()
        result = aiprov(inventory_dir, *install)
        waited = time.monotonic() - started
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert re.search(rf"FAILED {host}\b", output), output
        assert "lock" in output.lower(), output
        assert waited >= 10, f"gave up after {waited:.0f} s, before the 10 s lock timeout"
        assert in_host(host, "dpkg", "--audit").stdout == ""
        assert in_host(host, "dpkg-query", "-W", "file", check=False).returncode != 0
    finally:
        in_host(host, "kill", holder_pid, check=False)

    result = aiprov(inventory_dir, *install)
    assert result.returncode == 0, result.stdout + result.stderr
    status = in_host(host, "dpkg-query", "-W", "-f", "${Status}", "file").stdout
    assert status == "install ok installed"
    assert in_host(host, "dpkg", "--audit").stdout == ""


def test_user_files_survive_every_role_with_a_backup_when_changed(fleet):
    """The user's files replace what the roles wrote before: the roles must merge again."""
    inventory_dir, (host, _) = fleet
    for path, content in USER_FILES.items():
        sandbox.run_podman(
            "exec", "-i", host, "sh", "-c", f"mkdir -p {Path(path).parent} && cat >{path}",
            stdin=content,
        )  # fmt: skip
    result = aiprov(inventory_dir, "--tags", CPU_ROLES, "--limit", host)
    assert result.returncode == 0, result.stdout + result.stderr

    for path, content in USER_FILES.items():
        now = in_host(host, "cat", path).stdout
        # Everything the user wrote is still there (aiprov may add its own).
        lost = user_content_lost(path, content, now)
        assert lost == [], f"{path} lost {lost}:\n{now}"
        if now != content:
            siblings = in_host(
                host, "find", str(Path(path).parent), "-maxdepth", "1",
                "-name", f"{Path(path).name}?*", "-type", "f",
            ).stdout.split()  # fmt: skip
            backups = [b for b in siblings if in_host(host, "cat", b).stdout == content]
            assert backups, f"{path} changed without a backup of the original: {siblings}"


def test_secrets_reach_no_unit_file_process_list_journal_or_artifact(fleet, tmp_path):
    inventory_dir, hosts = fleet
    runs = tmp_path / "runs"
    api_key, hub_token = "sk-drill-api-key-7f3a91", "hf_drillHubToken5c20e8"
    seen_in_ps: list[str] = []
    done = threading.Event()

    def watch_process_lists():
        # Sample argv of every process on this machine and in both hosts while
        # the run goes on: no process aiprov starts (ansible-playbook, ssh,
        # the modules on the hosts) may carry a secret on its command line.
        # The `aiprov -e KEY=VALUE` line typed by the user is the user's own.
        while not done.is_set():
            listings = [subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True,
                                       text=True, check=False).stdout]  # fmt: skip
            listings += [in_host(h, "ps", "-eww", "-o", "args", check=False).stdout for h in hosts]
            seen_in_ps.extend(
                line for text in listings for line in text.splitlines()
                if (api_key in line or hub_token in line) and " -m aiprov bootstrap " not in line
            )  # fmt: skip
            time.sleep(0.5)

    watcher = threading.Thread(target=watch_process_lists)
    watcher.start()
    try:
        result = aiprov(
            inventory_dir, "--tags", CPU_ROLES, "-e", f"vllm_service_api_key={api_key}",
            env={"HF_TOKEN": hub_token}, runs=runs,
        )  # fmt: skip
    finally:
        done.set()
        watcher.join()
    assert result.returncode == 0, result.stdout + result.stderr
    assert seen_in_ps == []
    assert api_key not in result.stdout + result.stderr

    for host in hosts:
        for secret in (api_key, hub_token):
            units = in_host(
                host, "grep", "-rlF", secret, "/etc/systemd", "/run/systemd", "/usr/lib/systemd",
                check=False,
            )  # fmt: skip
            assert units.returncode == 1 and units.stdout == "", f"{host}: {units.stdout}"
            journal = in_host(host, "journalctl", "--no-pager", "-o", "cat").stdout
            assert secret not in journal, host
            logs = in_host(host, "grep", "-rlF", secret, "/var/log", "/root/.ansible", check=False)
            assert logs.stdout == "", f"{host}: {logs.stdout}"

    files = [p for p in runs.rglob("*") if p.is_file()]
    assert files, "the run left no artifacts to check"
    for path in files:
        text = path.read_text(errors="replace")
        assert api_key not in text and hub_token not in text, path
