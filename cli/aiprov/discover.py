"""`aiprov init --discover`: an inventory written from what the hosts have.

Each host answers doctor's read-only probe (data/doctor-probe.sh); its GPUs are
matched against the family table (gpu_families.yml) by nvidia-smi's name, or by
PCI device id before a driver is installed. A host whose GPUs no family lists,
that has GPUs of several models, or none, is named with the reason and left
out: never guessed. Every placed host gets its family group, its GPU count,
memory and NVSwitches as found, and a starting plan of vLLM services for the
models of a built-in profile's catalog, each placed by trying tensor-parallel
sizes against validate's own rules (vllm_checks.check_parallelism and
check_memory, i.e. aiprov.plan): nothing here re-derives a head count or a
memory figure.

Pure apart from run_probes (which asks the hosts through doctor.run_probe) and
write (which writes the files).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiprov import (
    doctor,
    gpu_families,
    inventory,
    paths,
    plan,
    profiles,
    runner,
    validate,
    vllm_checks,
)
from aiprov.doctor import HostReport
from aiprov.gpu_families import GpuModel
from aiprov.inventory import Host, Inventory
from aiprov.problems import Problem

# What a placed generative service may take of its GPUs (vLLM's default).
SERVICE_FRACTION = 0.9
# Pooling services (embeddings, rerankers) share one GPU at the smallest of these
# fractions that holds this many sequences of their max_model_len.
POOLING_FRACTIONS = tuple(round(0.05 * step, 2) for step in range(1, 10))
POOLING_SEQUENCES = 4
# A generative service whose KV cache holds fewer tokens than this at a TP size is
# tried at the next size; above it, its max_model_len is lowered to what fits.
MIN_MODEL_LEN = 4096
# Context length of a service whose template names none.
DEFAULT_MODEL_LEN = 32768
TP_SIZES = (1, 2, 4, 8)

_TARGET = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:\s@]+)(?::(?P<port>\d+))?$")


class DiscoverError(profiles.ProfileError):
    """Bad targets, an unusable hosts file or target directory (exit 4)."""


@dataclass(frozen=True)
class Target:
    """A host to ask, written `[user@]host[:port]` as for ssh."""

    name: str
    user: str | None = None
    port: int | None = None


def parse_target(text: str, where: str = "command line") -> Target:
    match = _TARGET.match(text.strip())
    if not match:
        raise DiscoverError(f"{where}: '{text}' is not [user@]host[:port]")
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 0 < port < 65536:
        raise DiscoverError(f"{where}: '{text}': port {port} is out of 1-65535")
    return Target(match["host"].strip("[]"), match["user"], port)


def read_hosts_file(path: Path) -> list[Target]:
    """One `[user@]host[:port]` per line; blank lines and `#` comments are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise DiscoverError(f"{path}: {error.strerror}") from error
    found = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            found.append(parse_target(text, f"{path}:{number}"))
    return found


def targets(args: list[str], hosts_file: Path | None) -> list[Target]:
    """The hosts to ask, from the command line then the hosts file, each once."""
    found = [parse_target(arg) for arg in args]
    if hosts_file is not None:
        found += read_hosts_file(hosts_file)
    if not found:
        raise DiscoverError("--discover needs hosts: name them, or give --hosts-file")
    unique: dict[str, Target] = {}
    for target in found:
        if target.name in unique and unique[target.name] != target:
            raise DiscoverError(f"host {target.name} is given twice, differently")
        unique[target.name] = target
    return list(unique.values())


def probe_inventory(hosts: list[Target], connection: str) -> dict[str, Any]:
    """The inventory doctor's probe runs over: each host with how to reach it."""
    return {"all": {"hosts": {t.name: connection_vars(t, connection) for t in hosts}}}


def connection_vars(target: Target, connection: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if connection != "ssh":
        values["ansible_connection"] = connection
    if target.user:
        values["ansible_user"] = target.user
    if target.port:
        values["ansible_port"] = target.port
    return values


# ---- what a host has ---------------------------------------------------------


@dataclass
class Found:
    """One host as discovered: its family and GPUs, or why it is left out."""

    host: str
    problem: str | None = None
    reachable: bool = True
    family: str | None = None
    model: GpuModel | None = None
    count: int = 0
    memory_mib: int = 0
    memory_source: str = ""  # nvidia-smi, or the family table when no driver answers
    nvswitches: int = 0
    driver: str | None = None
    cuda_release: str | None = None  # nvcc's, when a toolkit is installed
    notes: list[str] = field(default_factory=list)

    @property
    def memory_gib(self) -> float:
        return gpu_families.memory_gib(self.memory_mib)


def identify_host(report: HostReport) -> Found:
    """The family and GPUs of a host from its probe report, or the reason it has none."""
    host = report.host
    if not report.reachable or report.error:
        return Found(host, problem=f"could not be asked: {report.error}", reachable=False)
    groups = doctor.found_models(report)
    if not groups:
        return Found(
            host,
            problem="no NVIDIA GPU: nvidia-smi lists none and the PCI bus has no NVIDIA GPU; "
            "--discover writes GPU hosts only (put a CPU host in the inventory by hand, "
            "with aiprov_gpu_family: cpu)",
        )
    if len(groups) > 1:
        seen = "; ".join(
            f"GPU {', '.join(map(str, indexes))}: {doctor.describe(name, device)}"
            for name, device, indexes in groups
        )
        return Found(
            host,
            problem=f"GPUs of several models ({seen}); a host belongs to one GPU family: "
            "write it by hand",
        )
    name, device, indexes = groups[0]
    known = gpu_families.identify(name, device)
    if known is None:
        listed = ", ".join(gpu_families.names())
        return Found(
            host,
            problem=f"GPU {', '.join(map(str, indexes))}: {doctor.describe(name, device)}"
            f"{f' (PCI device {device})' if name and device else ''} is a model no GPU family "
            f"lists ({listed}); add it to gpu_families.yml (name, PCI device id, memory as "
            "nvidia-smi reports it) or write the host by hand",
        )
    family, model = known
    found = Found(host, family=family.name, model=model, count=len(indexes))
    found.nvswitches = len(report.nvswitches)
    found.driver = report.driver.get("version")
    found.cuda_release = report.cuda_toolkit.get("release")
    sizes = [gpu.memory_mib for gpu in report.gpus if gpu.memory_mib]
    if sizes:
        found.memory_mib, found.memory_source = min(sizes), "nvidia-smi"
    else:
        found.memory_mib, found.memory_source = model.memory_mib, "the family table"
        found.notes.append(
            "no driver answered: the GPUs were named by their PCI device id and their "
            f"memory is the family table's {model.memory_mib} MiB"
        )
    if report.gpus and len(report.pci_gpus) > len(report.gpus):
        hidden = len(report.pci_gpus) - len(report.gpus)
        found.notes.append(
            f"{hidden} GPU(s) on the PCI bus that the driver does not show are not counted"
        )
    return found


# ---- the starting plan -------------------------------------------------------


@dataclass
class Catalog:
    """A built-in profile's models and services, the templates of a starting plan."""

    profile: str
    all_vars_file: Path
    models_catalog: list[dict[str, Any]]
    services: list[dict[str, Any]]
    vllm_version: str | None
    driver_branch: str | None  # the branch the profile runs its vLLM build on


def load_catalog(profile: str) -> Catalog:
    if profile not in profiles.names():
        raise DiscoverError(
            f"unknown profile '{profile}' (choose from {', '.join(profiles.names())})"
        )
    root = paths.profiles_dir() / profile
    all_vars_file = root / "group_vars" / "all.yml"
    all_vars = paths.read_yaml(all_vars_file) or {}
    services: list[dict[str, Any]] = []
    version = branch = None
    for host_file in sorted((root / "host_vars").glob("*.yml")):
        values = paths.read_yaml(host_file) or {}
        services += values.get("vllm_service_services") or []
        version = values.get("vllm_service_version", version)
        branch = values.get("nvidia_driver_branch", branch)
    return Catalog(
        profile=profile,
        all_vars_file=all_vars_file,
        models_catalog=list(all_vars.get("models_catalog") or []),
        services=services,
        vllm_version=version,
        driver_branch=None if branch is None else str(branch),
    )


def _candidate_host(found: Found, catalog: Catalog, services: list[dict[str, Any]]) -> Host:
    return Host(
        name=found.host,
        groups=[found.family or ""],
        vars={
            "aiprov_gpu_family": found.family,
            "aiprov_gpu_count": found.count,
            "aiprov_gpu_memory_gib": found.memory_gib,
            "models_catalog": catalog.models_catalog,
            plan.SERVICES_KEY: services,
        },
    )


def _problems(host: Host) -> list[str]:
    """What validate's parallelism and memory rules say about this host's services."""
    inventory = Inventory(sources=["discovered"], hosts=[host])
    found = [*vllm_checks.check_parallelism(inventory), *vllm_checks.check_memory(inventory)]
    return [str(problem) for problem in found if problem.severity == "error"]


def _last_plan(host: Host) -> plan.ServicePlan:
    return plan.plan_host(host, "discovered").services[-1]


def _place_generative(
    found: Found, catalog: Catalog, placed: list[dict[str, Any]], template: dict[str, Any],
    free: list[int],
) -> dict[str, Any] | None:  # fmt: skip
    """The template on the fewest free GPUs that validate's rules accept at
    SERVICE_FRACTION with its whole max_model_len; failing that, on the fewest
    where its KV cache holds at least MIN_MODEL_LEN tokens, its length lowered."""
    for shorten in (False, True):
        for tp in (size for size in TP_SIZES if size <= len(free)):
            entry = {
                **template,
                "gpus": free[:tp],
                "tensor_parallel_size": tp,
                "gpu_memory_utilization": SERVICE_FRACTION,
            }
            entry.pop("pipeline_parallel_size", None)
            entry.pop("replicas", None)
            planned = _last_plan(_candidate_host(found, catalog, [*placed, entry]))
            if planned.facts is None:
                return None  # no facts: nothing to check a placement with
            wanted = int(
                template.get("max_model_len") or min(planned.facts.max_model_len, DEFAULT_MODEL_LEN)
            )
            holds = (planned.kv_tokens or 0) // 1024 * 1024
            length = min(wanted, holds) if shorten else wanted
            if length < min(wanted, MIN_MODEL_LEN) or length > holds:
                continue
            entry["max_model_len"] = length
            if not _problems(_candidate_host(found, catalog, [*placed, entry])):
                return entry
    return None


def _place_pooling(
    found: Found, catalog: Catalog, placed: list[dict[str, Any]], template: dict[str, Any],
    gpu: int,
) -> dict[str, Any] | None:  # fmt: skip
    """The template on GPU `gpu` at the smallest fraction that holds
    POOLING_SEQUENCES of its sequences and that validate's rules accept."""
    for fraction in POOLING_FRACTIONS:
        entry = {
            **template,
            "gpus": [gpu],
            "tensor_parallel_size": 1,
            "gpu_memory_utilization": fraction,
        }
        entry.pop("pipeline_parallel_size", None)
        entry.pop("replicas", None)
        host = _candidate_host(found, catalog, [*placed, entry])
        planned = _last_plan(host)
        if planned.facts is None:
            return None
        entry.setdefault("max_model_len", min(planned.facts.max_model_len, DEFAULT_MODEL_LEN))
        enough = planned.kv_per_token_bytes == 0 or (
            planned.kv_tokens or 0
        ) >= POOLING_SEQUENCES * int(entry["max_model_len"])
        if enough and not _problems(_candidate_host(found, catalog, [*placed, entry])):
            return entry
    return None


def _is_pooling(template: dict[str, Any]) -> bool:
    return template.get("runner") == "pooling"


def plan_services(found: Found, catalog: Catalog) -> tuple[list[dict[str, Any]], list[str]]:
    """A starting list of vLLM services for this host, and a note per template left out.

    Generative services take GPUs of their own (the fewest that fit, in the
    profile's order); pooling services then share the next free GPU.
    """
    placed: list[dict[str, Any]] = []
    notes: list[str] = []
    free = list(range(found.count))
    for template in (t for t in catalog.services if not _is_pooling(t)):
        entry = _place_generative(found, catalog, placed, template, free)
        if entry is None:
            notes.append(
                f"service {template.get('name')} ({template.get('model')}) does not fit on the "
                f"{len(free)} GPU(s) left at any tensor-parallel size: left out"
            )
            continue
        placed.append(entry)
        free = free[len(entry["gpus"]) :]
    pooling = [t for t in catalog.services if _is_pooling(t)]
    for template in pooling:
        entry = _place_pooling(found, catalog, placed, template, free[0]) if free else None
        if entry is None:
            notes.append(
                f"service {template.get('name')} ({template.get('model')}) has no room on a "
                "free GPU: left out"
            )
            continue
        placed.append(entry)
    return placed, notes


# ---- asking and writing ------------------------------------------------------


def run_probes(hosts: list[Target], connection: str) -> list[HostReport]:
    """Ask every host doctor's read-only probe (through Ansible); a report per host."""
    with tempfile.TemporaryDirectory(prefix="aiprov-discover-") as private:
        source = Path(private) / "hosts.yml"
        source.write_text(yaml.safe_dump(probe_inventory(hosts, connection)))
        outputs = doctor.run_probe(str(source))
    reports = []
    for target in hosts:
        output = outputs.get(target.name)
        if output is None:
            reports.append(
                doctor.unreachable(target.name, "no answer: Ansible did not run the probe")
            )
        elif isinstance(output, HostReport):
            reports.append(output)
        else:
            reports.append(doctor.parse_probe(target.name, output))
    return reports


def _host_vars(found: Found, catalog: Catalog) -> tuple[str, list[str]]:
    """host_vars/<host>.yml: the GPUs as found and the starting plan; the plan's notes."""
    model = found.model
    assert model is not None
    services, notes = plan_services(found, catalog)
    header = [
        "---",
        "# Written by `aiprov init --discover` from the host's answer to doctor's probe:",
        f"# {found.count} x {model.name} (PCI {model.pci_device_id}, {model.board}), "
        f"{found.memory_mib} MiB each ({found.memory_source}), "
        f"{found.nvswitches} NVSwitch(es), driver {found.driver or 'none loaded'}, "
        f"CUDA toolkit {found.cuda_release or 'none'}.",
        *(f"# Note: {note}." for note in found.notes),
    ]
    values: dict[str, Any] = {
        "aiprov_gpu_count": found.count,
        "aiprov_gpu_memory_gib": found.memory_gib,
        "aiprov_gpu_nvswitch": found.nvswitches > 0,
    }
    # Keep what the host runs: the driver role never moves a driver unasked, and
    # doctor then holds the host to what it has.
    # A host without a driver gets the branch the profile runs its vLLM build on.
    if found.driver:
        values["nvidia_driver_branch"] = found.driver.split(".")[0]
    elif catalog.driver_branch:
        values["nvidia_driver_branch"] = catalog.driver_branch
    if found.cuda_release:
        values["cuda_toolkit_version"] = found.cuda_release
    body = yaml.safe_dump(values, sort_keys=False)
    plan_header = [
        "",
        f"# A starting plan for the models of profile {catalog.profile}, each service on the",
        "# fewest GPUs that validate's tensor-parallel and memory rules accept",
        "# (`aiprov plan -i DIR` shows it per GPU). Edit freely.",
        *(f"# Left out: {note}." for note in notes),
    ]
    service_values: dict[str, Any] = {}
    if catalog.vllm_version:
        service_values["vllm_service_version"] = catalog.vllm_version
    service_values["vllm_service_services"] = services
    text = "\n".join(header) + "\n" + body + "\n".join(plan_header) + "\n"
    text += yaml.safe_dump(service_values, sort_keys=False, width=1000)
    return text, notes


def write(
    target_dir: Path, hosts: list[Target], found: list[Found], catalog: Catalog,
    connection: str, force: bool = False,
) -> tuple[list[Path], dict[str, list[str]]]:  # fmt: skip
    """Write the inventory of the placed hosts into target_dir: the files written, and
    per host the services its plan left out."""
    placed = [f for f in found if f.problem is None]
    if not placed:
        raise DiscoverError("no host could be placed in a GPU family: nothing written")
    if target_dir.exists() and not target_dir.is_dir():
        raise DiscoverError(f"{target_dir} exists and is not a directory")
    if target_dir.exists() and any(target_dir.iterdir()) and not force:
        raise DiscoverError(f"{target_dir} is not empty (use --force to overwrite its files)")
    by_name = {t.name: t for t in hosts}
    groups: dict[str, dict[str, Any]] = {}
    for item in placed:
        assert item.family is not None
        members = groups.setdefault(item.family, {"hosts": {}})["hosts"]
        members[item.host] = connection_vars(by_name[item.host], connection) or None
    (target_dir / "group_vars").mkdir(parents=True, exist_ok=True)
    (target_dir / "host_vars").mkdir(exist_ok=True)
    written = [target_dir / "hosts.yml", target_dir / "group_vars" / "all.yml"]
    written[0].write_text(
        "---\n# Written by `aiprov init --discover`: each host in the group of its GPU family\n"
        "# (gpu_families.yml); host_vars/<host>.yml holds its GPUs as found.\n"
        + yaml.safe_dump({"all": {"children": groups}}, sort_keys=False)
    )
    shutil.copyfile(catalog.all_vars_file, written[1])
    left_out = {}
    for item in placed:
        text, left_out[item.host] = _host_vars(item, catalog)
        path = target_dir / "host_vars" / f"{item.host}.yml"
        path.write_text(text)
        written.append(path)
    return written, left_out


@dataclass
class Result:
    found: list[Found]
    written: list[Path]
    left_out: dict[str, list[str]]  # per host, the profile's services its plan left out
    problems: list[Problem]  # aiprov validate's, over the written inventory

    @property
    def exit_code(self) -> int:
        """3 when a host could not be asked, 4 when the written inventory does not
        validate, 2 when a host was left out, else 0."""
        if not all(f.reachable for f in self.found):
            return runner.EXIT_HOST_UNREACHABLE
        if validate.errors(self.problems):
            return runner.EXIT_BAD_INPUT
        if any(f.problem for f in self.found):
            return runner.EXIT_HOST_FAILED
        return runner.EXIT_OK


def discover(
    target_dir: Path, hosts: list[Target], profile: str, connection: str = "ssh",
    force: bool = False,
) -> Result:  # fmt: skip
    """Ask the hosts, write the inventory of those placed in a family, validate it."""
    catalog = load_catalog(profile)
    if target_dir.exists() and any(target_dir.iterdir()) and not force:
        raise DiscoverError(f"{target_dir} is not empty (use --force to overwrite its files)")
    found = [identify_host(report) for report in run_probes(hosts, connection)]
    if not any(f.problem is None for f in found):
        return Result(found, [], {}, [])
    written, left_out = write(target_dir, hosts, found, catalog, connection, force=force)
    problems = validate.validate(inventory.load(str(target_dir)))
    return Result(found, written, left_out, problems)
