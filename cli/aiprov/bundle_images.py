"""Container images in an offline bundle: their names, and how hosts find them (pure).

`aiprov bundle build` copies each image with skopeo into a `dir:` directory
(skopeo's own layout: the manifest as the registry sent it, each blob in a file
named by its sha256), so the digest a host pulls is the source registry's.
`aiprov bundle serve` pushes those directories into a registry (CNCF
distribution) and the overlay points the hosts' dockerd and the roles at it:

- Docker Hub images keep their repository (library/redis for redis), so
  dockerd's registry-mirrors (docker_registry_mirrors) pulls them from the
  bundle under their usual names;
- dockerd mirrors Docker Hub only: an image of another registry is stored under
  its registry's name (ghcr.io/org/x) and reaches hosts only through the role
  variable that names its registry (mineru_image_registry); for those the
  bundle registry, plain HTTP, is an insecure registry of the daemon.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiprov.bundle import BundleError

HUB = "docker.io"
# The marker bundle build writes in each image's directory (the bundle_host
# role's registry_images.py reads it under the same name).
MARKER = ".aiprov-image.json"
# Docker's own rule (distribution/reference): the first component is a registry
# when it has a dot or a port, or is localhost.
_REGISTRY = re.compile(r"^(localhost|[^/]*[.:][^/]*)$")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class ImageNameError(BundleError):
    pass


@dataclass(frozen=True)
class Image:
    """An image a host's role pulls, and the role variable naming its registry."""

    ref: str
    # e.g. mineru_image_registry, and the image's name under it (mineru_image_name)
    registry_variable: str = ""
    name: str = ""


@dataclass(frozen=True)
class Reference:
    registry: str  # docker.io for Docker Hub
    path: str  # library/redis, org/x
    tag: str

    @property
    def name(self) -> str:
        """The name without the tag, as written in full (docker.io/library/redis)."""
        return f"{self.registry}/{self.path}"


def parse(ref: str) -> Reference:
    """A tagged reference normalized as Docker does (redis: docker.io/library/redis:latest)."""
    if "@" in ref:
        raise ImageNameError(f"{ref}: pinned by digest; a bundle keeps images by tag")
    first, slash, rest = ref.partition("/")
    if slash and _REGISTRY.match(first):
        registry, remainder = first.lower(), rest
    else:
        registry, remainder = HUB, ref
    registry = HUB if registry == "index.docker.io" else registry
    last = remainder.rsplit("/", 1)[-1]
    path, tag = remainder.rsplit(":", 1) if ":" in last else (remainder, "latest")
    if registry == HUB and "/" not in path:
        path = f"library/{path}"
    if not path or not tag or path != path.lower():
        raise ImageNameError(f"{ref}: not an image reference (name[:tag], lower case)")
    return Reference(registry, path, tag)


def repository(ref: str) -> str:
    """Where the bundle registry keeps the image: Docker Hub's repository as is
    (what registry-mirrors asks for), others under their registry's name (a
    port's colon becomes a dash: a repository name has no colon)."""
    parsed = parse(ref)
    if parsed.registry == HUB:
        return parsed.path
    return f"{parsed.registry.replace(':', '-')}/{parsed.path}"


def directory(ref: str) -> str:
    """The image's directory in the bundle, relative to images/ (NAME:TAG: the
    colon keeps one image's directory from being another's parent)."""
    parsed = parse(ref)
    return f"{parsed.name}:{parsed.tag}"


def skopeo_platform(arch: str) -> list[str]:
    """skopeo's global options that pick the target's image from a multi-platform list."""
    return ["--override-os", "linux", "--override-arch", _ARCH.get(arch, arch)]


def platform_manifest(index: dict, arch: str) -> str:
    """The digest of the target's entry in a manifest list or OCI index ("" if none)."""
    wanted = _ARCH.get(arch, arch)
    for entry in index.get("manifests", []):
        platform = entry.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == wanted:
            return entry["digest"]
    return ""


def manifest_size(manifest: dict) -> int:
    """Bytes of an image manifest's config and layers (what a copy downloads)."""
    blobs = [manifest.get("config") or {}, *manifest.get("layers", [])]
    return sum(int(blob.get("size") or 0) for blob in blobs)


def overlay(images: list[Image], netloc: str) -> tuple[dict, list[str]]:
    """The variables that make hosts pull `images` from the bundle registry at
    `netloc` (ADDRESS:PORT, plain HTTP), and notes on images they cannot reach."""
    variables: dict = {}
    notes: list[str] = []
    others = [image for image in images if parse(image.ref).registry != HUB]
    if len(others) < len(images):
        variables["docker_registry_mirrors"] = [f"http://{netloc}"]
    for image in others:
        stored = repository(image.ref)
        if image.registry_variable and stored.endswith("/" + image.name):
            prefix = stored.removesuffix("/" + image.name)
            variables[image.registry_variable] = f"{netloc}/{prefix}"
        else:
            notes.append(
                f"image {image.ref}: dockerd mirrors only Docker Hub; it is in the bundle's"
                f" registry as {netloc}/{stored}:{parse(image.ref).tag}, name it so where"
                " it is used"
            )
    if others:
        # The bundle's registry speaks plain HTTP.
        variables["docker_insecure_registries"] = [netloc]
    return variables, notes
