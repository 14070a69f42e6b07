"""The GPU families: read from gpu_families.yml, their one home.

That file is an inventory source Ansible loads before the user's (its groups'
variables reach the hosts in them); this module reads the same file for
Python: the family names (validate's groups and schema choices), each family's
defaults, and which family a GPU found on a host belongs to (`aiprov doctor`,
`aiprov init --discover`).

Pure: no Ansible, no click.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from aiprov import paths

# The aiprov_gpu_family of hosts without a GPU (the sandbox); no group carries it.
CPU_FAMILY = "cpu"


@dataclass(frozen=True)
class GpuModel:
    name: str  # as nvidia-smi reports it
    pci_device_id: str  # sysfs `device`, e.g. 0x2330
    memory_mib: int  # nvidia-smi's memory.total
    board: str  # sxm | pcie


@dataclass(frozen=True)
class Family:
    name: str
    vars: dict[str, Any]  # the group's variables, as Ansible gives them to its hosts
    models: tuple[GpuModel, ...]

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(model.name for model in self.models)


@cache
def families() -> dict[str, Family]:
    """Every family of gpu_families.yml by group name, in the file's order."""
    data = paths.read_yaml(paths.families_inventory()) or {}
    groups = (data.get("all") or {}).get("children") or {}
    found = {}
    for name, group in groups.items():
        values = dict((group or {}).get("vars") or {})
        models = tuple(GpuModel(**entry) for entry in values.get("aiprov_gpu_models") or ())
        found[name] = Family(name=name, vars=values, models=models)
    return found


def names() -> tuple[str, ...]:
    return tuple(families())


def models_of(entries: Any) -> tuple[GpuModel, ...]:
    """A host's aiprov_gpu_models as GpuModels (entries that are not mappings are skipped:
    the schema reports them)."""
    if not isinstance(entries, list):
        return ()
    fields = GpuModel.__dataclass_fields__
    return tuple(
        GpuModel(**{key: entry.get(key) for key in fields})
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("name"), str)
    )


def normal_device_id(value: str | None) -> str:
    """`0x2330`, `2330`, `0X2330` -> `0x2330`; '' for nothing."""
    text = (value or "").strip().lower().removeprefix("0x")
    return f"0x{text}" if text else ""


def matches(model: GpuModel, name: str | None, device_id: str | None) -> bool:
    """A GPU is this model when nvidia-smi's name is its name (case aside), or, without a
    name (no driver yet), when its PCI device id is the model's."""
    if name:
        return name.strip().casefold() == model.name.casefold()
    wanted = normal_device_id(model.pci_device_id)
    return bool(wanted) and normal_device_id(device_id) == wanted


def identify(name: str | None, device_id: str | None) -> tuple[Family, GpuModel] | None:
    """The family and model of a GPU found on a host, or None when no family has it."""
    for family in families().values():
        for model in family.models:
            if matches(model, name, device_id):
                return family, model
    return None


def memory_gib(memory_mib: int) -> float:
    """nvidia-smi's MiB as aiprov_gpu_memory_gib: GiB rounded down to 0.1."""
    return int(memory_mib * 10 / 1024) / 10
