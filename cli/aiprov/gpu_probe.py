"""GPU detection: one home for `aiprov doctor` and the nvidia_driver role.

Both run the same read-only probe (data/doctor-probe.sh) on a host and read
its answer here: the NVIDIA PCI functions (GPUs and NVSwitches, from sysfs),
the loaded driver's version (/proc/driver/nvidia/version, else nvidia-smi) and
Secure Boot. doctor asks every section; the role asks DRIVER_SECTIONS through
its plugin shims (roles/nvidia_driver/lookup_plugins/nvidia_driver_probe.py for
the command, filter_plugins/nvidia_driver.py for the facts) and adds what only
it needs (the package database's version).

Pure: no Ansible, no click; the role's plugins import it.
"""

from __future__ import annotations

import csv
import io
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiprov import paths

# The sections the nvidia_driver role reads (doctor asks for all of them).
DRIVER_SECTIONS = ("secure-boot", "proc-driver-version", "gpus", "pci")

# The nvidia-smi query the probe runs; parse_gpus expects these columns.
GPU_QUERY_FIELDS = (
    "index",
    "name",
    "memory.total",
    "pci.bus_id",
    "persistence_mode",
    "driver_version",
)

# PCI class codes (sysfs class, first 4 hex digits) of NVIDIA functions:
# 0300/0302 are GPUs, 0680 ("bridge") NVSwitches.
GPU_CLASSES = ("0300", "0302")
NVSWITCH_CLASS = "0680"

_SECTION = re.compile(r"^### (?P<name>[a-z-]+)$")
# "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ..."
# "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 ..."
_PROC_VERSION = re.compile(r"Kernel Module(?: for \S+)?\s+(?P<version>\d+\.\d+(?:\.\d+)?)")


@dataclass
class Gpu:
    index: int
    name: str
    memory_mib: int | None
    bus_id: str
    persistence_mode: bool | None
    driver_version: str


def probe_script() -> Path:
    return paths.data_dir() / "doctor-probe.sh"


def probe_command(sections: Iterable[str] = DRIVER_SECTIONS) -> str:
    """The probe's command line for ansible.builtin.script: its path, then the sections."""
    return shlex.join([str(probe_script()), *sections])


def split_sections(text: str) -> dict[str, str]:
    """The probe's output as {section: body}; text before the first header is dropped."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = _SECTION.match(line.strip())
        if match:
            current = sections.setdefault(match["name"], [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def parse_secure_boot(text: str) -> bool | None:
    """od's bytes of the SecureBoot EFI variable: the last one is 1 when it is on."""
    numbers = text.split()
    if not numbers:
        return None
    return numbers[-1] == "1"


def parse_proc_version(text: str) -> dict[str, str | None]:
    """/proc/driver/nvidia/version: the loaded module's version and flavour."""
    match = _PROC_VERSION.search(text)
    if not match:
        return {"version": None, "kernel_module": None}
    flavour = "open" if "Open Kernel Module" in text else "proprietary"
    return {"version": match["version"], "kernel_module": flavour}


def _int_or_none(value: str) -> int | None:
    try:
        return int(float(value))
    except ValueError:
        return None


def parse_gpus(text: str) -> list[Gpu]:
    """`nvidia-smi --query-gpu=<GPU_QUERY_FIELDS> --format=csv,noheader,nounits`.

    Lines that are not rows of that query (nvidia-smi's error messages when no
    driver is loaded) are ignored.
    """
    gpus = []
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if len(row) != len(GPU_QUERY_FIELDS) or not row[0].strip().isdigit():
            continue
        index, name, memory, bus_id, persistence, driver = (cell.strip() for cell in row)
        gpus.append(
            Gpu(
                index=int(index),
                name=name,
                memory_mib=_int_or_none(memory),
                bus_id=bus_id,
                persistence_mode={"Enabled": True, "Disabled": False}.get(persistence),
                driver_version=driver,
            )
        )
    return gpus


def _pci_functions(text: str) -> Iterable[tuple[str, str, str]]:
    """The probe's `ADDRESS 0xCCCCCC [0xDDDD]` lines as (address, class, device id).

    The device id is "" in the answers of probes older than that column.
    """
    for line in text.splitlines():
        parts = line.split()
        if len(parts) in (2, 3):
            code = parts[1].lower().removeprefix("0x")[:4]
            yield parts[0], code, parts[2].lower() if len(parts) == 3 else ""


def parse_pci(text: str) -> dict[str, list[str]]:
    """NVIDIA PCI functions by kind: {"gpu": [addresses], "nvswitch": [addresses]}."""
    kinds: dict[str, list[str]] = {"gpu": [], "nvswitch": []}
    for address, code, _ in _pci_functions(text):
        if code in GPU_CLASSES:
            kinds["gpu"].append(address)
        elif code == NVSWITCH_CLASS:
            kinds["nvswitch"].append(address)
    return kinds


def pci_gpu_devices(text: str) -> dict[str, str]:
    """The GPUs' PCI device ids by address ({"0000:18:00.0": "0x2330"}), those the
    probe reported."""
    return {
        address: device
        for address, code, device in _pci_functions(text)
        if code in GPU_CLASSES and device
    }


def pci_address(bus_id: str) -> str:
    """nvidia-smi's bus id (00000000:18:00.0) as sysfs names it (0000:18:00.0)."""
    domain, _, rest = bus_id.lower().partition(":")
    return f"{domain[-4:]}:{rest}" if rest else bus_id.lower()


def loaded_driver(sections: dict[str, str]) -> dict[str, str | None]:
    """The running driver: the loaded module's version, else what nvidia-smi reports.

    {version, kernel_module (open | proprietary), source (where the version was read)}.
    """
    driver = parse_proc_version(sections.get("proc-driver-version", ""))
    driver["source"] = "/proc/driver/nvidia/version" if driver["version"] else None
    gpus = parse_gpus(sections.get("gpus", ""))
    if not driver["version"] and gpus:
        driver.update(version=gpus[0].driver_version, source="nvidia-smi")
    return driver


def satisfies(installed: str, version: str, branch: str) -> bool:
    """Whether the installed driver is the wanted one: the exact version when one
    is set, else any version of the branch."""
    if version:
        return installed == version
    return installed.startswith(f"{branch}.")


def driver_facts(text: str) -> dict[str, Any]:
    """What the nvidia_driver role reads from the probe's answer (DRIVER_SECTIONS).

    driver_version and driver_source are "" when no driver is loaded; gpus and
    nvswitches are PCI addresses; secure_boot is false when the firmware does
    not say (a BIOS boot, no efivarfs).
    """
    sections = split_sections(text)
    if "end" not in sections:
        raise ValueError("the probe's output is incomplete")
    driver = loaded_driver(sections)
    pci = parse_pci(sections.get("pci", ""))
    return {
        "driver_version": driver["version"] or "",
        "driver_source": driver["source"] or "",
        "kernel_module": driver["kernel_module"] or "",
        "gpus": pci["gpu"],
        "nvswitches": pci["nvswitch"],
        "secure_boot": parse_secure_boot(sections.get("secure-boot", "")) is True,
    }
