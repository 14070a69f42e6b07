"""An offline bundle's manifest, and checking a bundle against it.

A bundle is a directory that `aiprov bundle build` fills on a connected machine
with everything a fleet's hosts need (wheels, distribution packages as a local
repository, models, container images) and `aiprov bundle serve` serves to hosts
that reach nothing else. Its manifest (MANIFEST, JSON) names the target the
bundle was resolved for (OS release, Python, architecture) and every file:
part, what it is, its version, size and sha256. Everything here is pure: no
network, no subprocess.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiprov.problems import Problem

MANIFEST = "manifest.json"
FORMAT = 1
PARTS = ("wheels", "apt", "rpm", "models", "images")
_CHUNK = 1 << 20


class BundleError(Exception):
    """A bundle that cannot be read or built; the message is for the operator."""


@dataclass(frozen=True)
class Target:
    """What the bundle was resolved for: the hosts must run exactly this."""

    os: str  # e.g. debian12 (the sandbox's and aiprov_os's names)
    python: str  # e.g. 3.11
    arch: str  # e.g. x86_64


@dataclass(frozen=True)
class Item:
    """One file of the bundle, relative to its directory."""

    path: str
    part: str
    name: str
    version: str
    size: int
    sha256: str


@dataclass
class Manifest:
    target: Target
    items: list[Item] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "target": asdict(self.target),
            "items": [asdict(item) for item in sorted(self.items, key=lambda i: i.path)],
        }

    def size(self, part: str | None = None) -> int:
        return sum(i.size for i in self.items if part is None or i.part == part)

    def add(self, items: Iterable[Item]) -> None:
        """Add or replace items (by path)."""
        new = {item.path: item for item in items}
        self.items = [i for i in self.items if i.path not in new] + list(new.values())

    def part(self, part: str) -> list[Item]:
        return [i for i in self.items if i.part == part]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def item_for(root: Path, path: Path, part: str, name: str, version: str) -> Item:
    """The manifest entry of a file already in the bundle (hashes it)."""
    return Item(
        path=path.relative_to(root).as_posix(),
        part=part,
        name=name,
        version=version,
        size=path.stat().st_size,
        sha256=sha256_of(path),
    )


def parse(data: Any) -> Manifest:
    """A manifest from its JSON form; BundleError says what is wrong."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"not an aiprov bundle manifest of format {FORMAT}")
    try:
        target = Target(**data["target"])
        items = [Item(**entry) for entry in data["items"]]
    except (KeyError, TypeError) as error:
        raise BundleError(f"malformed entry ({error})") from None
    for item in items:
        if item.part not in PARTS:
            raise BundleError(f"{item.path}: unknown part '{item.part}'")
        if Path(item.path).is_absolute() or ".." in Path(item.path).parts:
            raise BundleError(f"{item.path}: path leaves the bundle")
    return Manifest(target, items)


def load(root: Path) -> Manifest:
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"no manifest (is {root} a bundle?)") from None
    except json.JSONDecodeError as error:
        raise BundleError(f"not JSON ({error.msg}, line {error.lineno})") from None
    return parse(data)


def save(root: Path, manifest: Manifest) -> Path:
    """Whole or not at all: a build killed mid-write keeps the previous manifest."""
    path = root / MANIFEST
    tmp = path.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=1) + "\n")
    tmp.replace(path)
    return path


def is_present(root: Path, item: Item) -> bool:
    """Whether the item's file is there at its size (the cheap check a re-run uses)."""
    path = root / item.path
    return path.is_file() and path.stat().st_size == item.size


def verify(root: Path, manifest: Manifest) -> Iterator[Problem]:
    """Every file against the manifest: missing, wrong size, or wrong sha256."""
    for item in sorted(manifest.items, key=lambda i: i.path):
        path = root / item.path
        what = f"{item.part} {item.name} {item.version}".rstrip()
        if not path.is_file():
            yield Problem(str(path), what, "missing from the bundle")
        elif (size := path.stat().st_size) != item.size:
            yield Problem(str(path), what, f"{size} bytes, the manifest says {item.size}")
        elif (digest := sha256_of(path)) != item.sha256:
            yield Problem(str(path), what, f"sha256 {digest}, the manifest says {item.sha256}")


def check_targets(
    root: Path, manifest: Manifest, hosts: Iterable[tuple[str, str, str, str]]
) -> Iterator[Problem]:
    """Hosts that run another OS release or architecture than the bundle was built for.

    `hosts`: (file the host's value comes from, host name, os, arch); an empty
    os or arch is unknown and not compared.
    """
    target = manifest.target
    for source, host, os_name, arch in hosts:
        if os_name and os_name != target.os:
            yield Problem(
                source,
                f"{host}: aiprov_os",
                f"the host runs {os_name}, the bundle {root} was built for {target.os}"
                f" (build one with: aiprov bundle build --os {os_name})",
            )
        if arch and arch != target.arch:
            yield Problem(
                source,
                f"{host}: aiprov_arch",
                f"the host is {arch}, the bundle {root} was built for {target.arch}",
            )
