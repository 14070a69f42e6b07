"""`aiprov doctor`: what each host has (OS, kernel, driver, GPUs, CUDA) against what
its inventory expects. Read-only: hosts run data/doctor-probe.sh, which only asks.
The GPU detection (PCI functions, loaded driver, Secure Boot) is aiprov.gpu_probe's,
shared with the nvidia_driver role.

Pure logic: no click, no rich. The probe's raw text is parsed here, so a host's
real output can be kept as a test fixture (tests/fixtures/doctor/).

The JSON document (`aiprov doctor --json`) is stable; its schema is named by
SCHEMA and documented in docs/gpu.md. New keys may be added; existing keys keep
their meaning and type.
"""

from __future__ import annotations

import re
import shlex
import signal
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiprov import checks_values, gpu_families, inventory, paths, runner
from aiprov.gpu_families import CPU_FAMILY
from aiprov.gpu_probe import (
    Gpu,
    loaded_driver,
    parse_gpus,
    parse_pci,
    parse_secure_boot,
    pci_address,
    pci_gpu_devices,
    probe_script,
    satisfies,
    split_sections,
)
from aiprov.vault import VaultOptions

SCHEMA = "aiprov.doctor/1"


_NVCC_RELEASE = re.compile(r"release (?P<release>\d+\.\d+), V(?P<version>[\d.]+)")


@dataclass
class Expected:
    """What the inventory asks of a host (role defaults where it says nothing).

    A CPU host (aiprov_gpu_family: cpu, like the sandbox) expects no NVIDIA
    driver, GPU or CUDA toolkit: the GPU roles skip it, so their defaults do not
    apply (gpu is false, the versions are empty).
    """

    driver_branch: str
    driver_version: str
    cuda_version: str
    gpu_count: int | None = None
    gpu_memory_gib: float | None = None
    nvswitch: bool | None = None
    gpu_family: str | None = None
    gpu: bool = True


@dataclass
class HostReport:
    host: str
    reachable: bool = True
    error: str | None = None
    os: dict[str, str] = field(default_factory=dict)
    kernel: str | None = None
    secure_boot: bool | None = None
    nouveau_loaded: bool | None = None
    driver: dict[str, str | None] = field(default_factory=dict)
    gpus: list[Gpu] = field(default_factory=list)
    pci_gpus: list[str] = field(default_factory=list)
    pci_gpu_devices: dict[str, str] = field(default_factory=dict)  # address: device id
    nvswitches: list[str] = field(default_factory=list)
    fabricmanager: str | None = None
    cuda_toolkit: dict[str, str | None] = field(default_factory=dict)
    expected: Expected | None = None
    missing: list[str] = field(default_factory=list)


def parse_os_release(text: str) -> dict[str, str]:
    result = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("ID", "VERSION_ID", "PRETTY_NAME"):
            parts = shlex.split(value) or [""]
            result[key.lower()] = parts[0]
    return result


def parse_nvcc(text: str) -> dict[str, str | None]:
    """The probe's nvcc section: the path found, then `nvcc --version`."""
    lines = text.splitlines()
    match = _NVCC_RELEASE.search(text)
    if not lines or not match:
        return {"path": None, "release": None, "version": None}
    return {"path": lines[0].strip(), "release": match["release"], "version": match["version"]}


def parse_probe(host: str, text: str) -> HostReport:
    """One host's report from the probe's raw output."""
    sections = split_sections(text)
    if "end" not in sections:
        return HostReport(host=host, error="the probe's output is incomplete")
    gpus = parse_gpus(sections.get("gpus", ""))
    pci = parse_pci(sections.get("pci", ""))
    driver = loaded_driver(sections)
    return HostReport(
        host=host,
        os=parse_os_release(sections.get("os-release", "")),
        kernel=sections.get("kernel") or None,
        secure_boot=parse_secure_boot(sections.get("secure-boot", "")),
        nouveau_loaded=sections.get("nouveau") == "loaded",
        driver=driver,
        gpus=gpus,
        pci_gpus=pci["gpu"],
        pci_gpu_devices=pci_gpu_devices(sections.get("pci", "")),
        nvswitches=pci["nvswitch"],
        fabricmanager=sections.get("fabricmanager") or None,
        cuda_toolkit=parse_nvcc(sections.get("nvcc", "")),
    )


def role_defaults() -> dict[str, Any]:
    """The defaults of the roles doctor checks against (what a host gets when
    its inventory says nothing)."""
    merged: dict[str, Any] = {}
    for role in ("nvidia_driver", "cuda_toolkit"):
        path = paths.roles_dir() / role / "defaults" / "main.yml"
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def expectations(host_vars: Mapping[str, Any], defaults: Mapping[str, Any]) -> Expected:
    def get(key: str) -> Any:
        return host_vars.get(key, defaults.get(key))

    def optional_int(key: str) -> int | None:
        value = host_vars.get(key)
        return int(value) if value not in (None, "") else None

    family = host_vars.get("aiprov_gpu_family")
    family = str(family) if family not in (None, "") else None
    if family == CPU_FAMILY:
        return Expected(
            driver_branch="",
            driver_version="",
            cuda_version="",
            gpu_count=optional_int("aiprov_gpu_count"),
            gpu_family=family,
            gpu=False,
        )
    nvswitch = host_vars.get("aiprov_gpu_nvswitch")
    return Expected(
        driver_branch=str(get("nvidia_driver_branch") or ""),
        driver_version=str(get("nvidia_driver_version") or ""),
        cuda_version=str(get("cuda_toolkit_version") or ""),
        gpu_count=optional_int("aiprov_gpu_count"),
        gpu_memory_gib=float(memory) if (memory := get("aiprov_gpu_memory_gib")) else None,
        nvswitch=bool(nvswitch) if nvswitch is not None else None,
        gpu_family=family,
    )


def compare(report: HostReport, expected: Expected) -> list[str]:
    """What the host lacks against the inventory, one sentence each."""
    if not expected.gpu:
        return _cpu_gaps(report, expected)
    return _gpu_host_gaps(report, expected)


def _cpu_gaps(report: HostReport, expected: Expected) -> list[str]:
    """A CPU host lacks nothing NVIDIA; only a GPU count the inventory states is checked.

    Secure Boot, nouveau and the PCI bus are not looked at: they matter to the
    driver alone, and a container (the sandbox) sees its machine's kernel and bus.
    """
    if expected.gpu_count is not None and len(report.gpus) != expected.gpu_count:
        return [f"{len(report.gpus)} GPU(s) visible, expected {expected.gpu_count}"]
    return []


def cpu_note(report: HostReport) -> str | None:
    """The line that says a host is a CPU host, for doctor's table; None for a GPU host."""
    if report.expected is None or report.expected.gpu:
        return None
    family = report.expected.gpu_family
    return (
        f"{report.host}: CPU host (aiprov_gpu_family: {family}): "
        "no NVIDIA driver, GPU or CUDA toolkit expected"
    )


def _gpu_host_gaps(report: HostReport, expected: Expected) -> list[str]:
    missing = []
    if report.secure_boot:
        missing.append("Secure Boot is on: DKMS modules load only if signed with an enrolled MOK")
    if report.nouveau_loaded:
        missing.append("nouveau is loaded: reboot after the nouveau role blacklisted it")
    missing += _driver_gaps(report, expected)
    missing += _gpu_gaps(report, expected)
    release = report.cuda_toolkit.get("release")
    if expected.cuda_version and release != expected.cuda_version:
        found = f"nvcc {release}" if release else "no nvcc"
        missing.append(f"{found}, the inventory expects CUDA toolkit {expected.cuda_version}")
    return missing


def _driver_gaps(report: HostReport, expected: Expected) -> list[str]:
    installed = report.driver.get("version")
    if not installed:
        wanted = expected.driver_version or f"branch {expected.driver_branch}"
        return [f"no NVIDIA driver is loaded (expected {wanted})"]
    if satisfies(installed, expected.driver_version, expected.driver_branch):
        return []
    wanted = expected.driver_version or f"branch {expected.driver_branch}"
    return [f"driver {installed} is loaded, expected {wanted}"]


def _gpu_gaps(report: HostReport, expected: Expected) -> list[str]:
    gaps = []
    gpus = report.gpus
    if len(report.pci_gpus) > len(gpus):
        hidden = len(report.pci_gpus) - len(gpus)
        gaps.append(f"{hidden} GPU(s) on the PCI bus that the driver does not show")
    if expected.gpu_count is not None and len(gpus) != expected.gpu_count:
        gaps.append(f"{len(gpus)} GPU(s) visible, expected {expected.gpu_count}")
    if expected.gpu_memory_gib is not None:
        # The inventory holds what nvidia-smi reports; allow for ECC and firmware changes.
        floor = expected.gpu_memory_gib * 1024 * 0.95
        for gpu in gpus:
            if gpu.memory_mib is not None and gpu.memory_mib < floor:
                want = expected.gpu_memory_gib
                gaps.append(f"GPU {gpu.index} has {gpu.memory_mib} MiB, expected {want:g} GiB")
    off = [str(g.index) for g in gpus if g.persistence_mode is False]
    if off:
        gaps.append(f"persistence mode is off on GPU {', '.join(off)}")
    if report.nvswitches and report.fabricmanager != "active":
        state = report.fabricmanager or "not installed"
        gaps.append(f"{len(report.nvswitches)} NVSwitch(es), nvidia-fabricmanager is {state}")
    if expected.nvswitch and not report.nvswitches:
        gaps.append("the inventory expects NVSwitches, none are visible")
    return gaps


def found_models(report: HostReport) -> list[tuple[str, str, list[int]]]:
    """The GPUs a host shows, grouped by model: [(name, PCI device id, indexes)].

    Named by nvidia-smi when a driver is loaded, else by the PCI device id alone
    (name ""), numbered in bus order.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    if report.gpus:
        for gpu in report.gpus:
            device = report.pci_gpu_devices.get(pci_address(gpu.bus_id), "")
            groups.setdefault((gpu.name, device), []).append(gpu.index)
    else:
        for index, address in enumerate(sorted(report.pci_gpus)):
            device = report.pci_gpu_devices.get(address, "")
            groups.setdefault(("", device), []).append(index)
    return [(name, device, indexes) for (name, device), indexes in groups.items()]


def describe(name: str, device: str) -> str:
    return name or f"PCI device {device or '(id unknown)'} (no driver to name it)"


def family_gaps(report: HostReport, host_vars: Mapping[str, Any], where: str) -> list[str]:
    """GPUs that are none of the models of the host's family group, as
    `FILE: HOST: message` naming the group, the model found and where it belongs."""
    family = host_vars.get("aiprov_gpu_family")
    models = gpu_families.models_of(host_vars.get("aiprov_gpu_models"))
    if not isinstance(family, str) or family == CPU_FAMILY or not models:
        return []
    gaps = []
    for name, device, indexes in found_models(report):
        if any(gpu_families.matches(model, name, device) for model in models):
            continue
        known = gpu_families.identify(name, device)
        fix = (
            f"move the host to group {known[0].name}"
            if known
            else "no GPU family lists this model: add it to gpu_families.yml, or list it in "
            "the host's aiprov_gpu_models"
        )
        which = ", ".join(map(str, indexes))
        listed = ", ".join(model.name for model in models)
        gaps.append(
            f"{where}: {report.host}: GPU {which} is {describe(name, device)}, not a model of "
            f"its family group {family} ({listed}); {fix}"
        )
    return gaps


def check(
    host: str,
    probe_output: str,
    host_vars: Mapping[str, Any],
    defaults: Mapping[str, Any],
    where: str = "",
) -> HostReport:
    """One host's report against its inventory; `where` is the inventory file that
    names the host (family mismatches are reported as `where: host: ...`)."""
    report = parse_probe(host, probe_output)
    if report.error:
        return report
    report.expected = expectations(host_vars, defaults)
    report.missing = family_gaps(report, host_vars, where) + compare(report, report.expected)
    return report


def unreachable(host: str, message: str) -> HostReport:
    return HostReport(host=host, reachable=False, error=message)


def to_json(reports: list[HostReport]) -> dict[str, Any]:
    return {"schema": SCHEMA, "hosts": [asdict(report) for report in reports]}


def run_probe(
    inventory_path: str, limit: str | None = None, vault_options: VaultOptions | None = None
) -> dict[str, str | HostReport]:
    """Run the probe on every host: {host: probe output, or an unreachable report}.

    Ansible's script module copies the probe into its own temporary directory
    on the host and removes it again; the probe itself only reads.
    """
    import ansible_runner  # slow to import: only when hosts are really asked

    outputs: dict[str, str | HostReport] = {}

    def handle(event: dict[str, Any]) -> bool:
        data = event.get("event_data", {}) or {}
        host, res = data.get("host"), data.get("res", {}) or {}
        kind = event.get("event")
        if not host:
            return True
        if kind == "runner_on_ok":
            outputs[host] = str(res.get("stdout", ""))
        elif kind in ("runner_on_failed", "runner_on_unreachable"):
            outputs[host] = unreachable(host, runner._message(res))
        return True

    with tempfile.TemporaryDirectory(prefix="aiprov-doctor-") as private:
        kwargs: dict[str, Any] = {
            "private_data_dir": private,
            "host_pattern": limit or "all",
            "module": "ansible.builtin.script",
            "module_args": str(probe_script()),
            "inventory": [str(paths.families_inventory()), str(Path(inventory_path).resolve())],
            "envvars": runner._environment(),
            "suppress_env_files": True,
            "quiet": True,
            "event_handler": handle,
            "cmdline": shlex.join(
                ["--become", *runner.vault_args(vault_options or VaultOptions(), Path(private))]
            ),
        }
        # ansible-runner turns Ctrl-C into a cancelled run with its own SIGINT and
        # SIGTERM handlers, and leaves them installed: put ours back.
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            result = ansible_runner.run(**kwargs)
        finally:
            if threading.current_thread() is threading.main_thread():
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)
    if result.status == "canceled":
        raise KeyboardInterrupt  # the CLI says "cancelled" and exits 130
    return outputs


def doctor(
    inventory_path: str, limit: str | None = None, vault_options: VaultOptions | None = None
) -> list[HostReport]:
    """Ask every host of the inventory and compare with what it expects."""
    loaded = inventory.load(inventory_path, vault_options=vault_options)
    # InputError when --limit matches no host: then no host is asked.
    selected = set(runner.limit_hosts(inventory_path, limit, vault_options)) if limit else None
    defaults = role_defaults()
    outputs = run_probe(inventory_path, limit, vault_options)
    reports = []
    for host in loaded.hosts:
        if selected is not None and host.name not in selected:
            continue  # left out by --limit
        output = outputs.get(host.name)
        if output is None:
            reports.append(unreachable(host.name, "no answer: Ansible did not run the probe"))
        elif isinstance(output, HostReport):
            reports.append(output)
        else:
            where = checks_values.hosts_file(loaded, host.name)
            reports.append(check(host.name, output, host.vars, defaults, where))
    return reports


def exit_code(reports: list[HostReport]) -> int:
    if any(not r.reachable or r.error for r in reports):
        return runner.EXIT_HOST_UNREACHABLE
    if any(r.missing for r in reports):
        return runner.EXIT_HOST_FAILED
    return runner.EXIT_OK
