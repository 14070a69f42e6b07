#!/usr/bin/env python3
"""An offline bundle's container images pushed into a registry (CNCF distribution).

One home for both servers of a bundle's images: the bundle_host role runs
this script on its host, and `aiprov bundle serve` loads it (as it loads
hub_repos.py), so both push the same images under the same names.

The images are those of the bundle's manifest (skopeo `dir:` directories,
each with the marker `aiprov bundle build` wrote: the reference, the
repository the registry keeps it under, the source registry's digest). An
image the registry already holds at that digest is skipped; the others are
pushed with `skopeo copy --preserve-digests`, so hosts pull the source's digest.

    registry_images.py [--check] BUNDLE_DIR [REGISTRY_URL]
        prints {"images": [{"ref", "repository", "tag", "digest", ...}, ...],
        "pushed": [REF, ...]} as JSON; without REGISTRY_URL it lists the images
        and asks no registry; --check: what it would push, nothing pushed (a
        registry that does not answer yet holds nothing); exit 1 with the
        reason on stderr.

Standard library and the skopeo command only (it runs with the host's python3).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

MARKER = ".aiprov-image.json"
# What the registry's manifest endpoint is asked to answer with: the stored
# manifest as is, whatever its type, so its digest is the source's.
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)


class RegistryError(Exception):
    pass


def bundled_images(bundle: Path) -> list[dict]:
    """Each image of the bundle's manifest: its marker, its tag (the manifest
    entry's version) and its directory."""
    items = json.loads((bundle / "manifest.json").read_text())["items"]
    found = []
    for item in sorted(items, key=lambda i: i["path"]):
        if item["part"] == "images" and item["path"].endswith("/" + MARKER):
            path = bundle / item["path"]
            marker = json.loads(path.read_text())
            found.append(marker | {"tag": item["version"], "directory": str(path.parent)})
    return found


def held_digest(registry: str, repository: str, tag: str) -> str:
    """The digest of REPOSITORY:TAG in the registry at URL `registry` ("" if it has none)."""
    request = urllib.request.Request(
        f"{registry}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": ", ".join(MANIFEST_TYPES)},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.headers.get("Docker-Content-Digest", "")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return ""
        raise RegistryError(f"the registry answered HTTP {error.code} for {repository}") from None
    except OSError as error:
        raise RegistryError(f"the registry at {registry} does not answer: {error}") from None


def push(images: list[dict], registry: str, write: bool = True) -> list[str]:
    """Push each image the registry at URL `registry` (plain HTTP) does not hold
    at its digest; returns their references (with write=False, those it would push)."""
    netloc = registry.removeprefix("http://")
    pushed = []
    for image in images:
        try:
            held = held_digest(registry, image["repository"], image["tag"])
        except RegistryError:
            if write:
                raise
            held = ""  # --check before the registry runs: it holds nothing yet
        if held == image["digest"]:
            continue
        if write:
            destination = f"docker://{netloc}/{image['repository']}:{image['tag']}"
            argv = ["skopeo", "copy", "-q", "--preserve-digests", "--dest-tls-verify=false"]
            done = subprocess.run(
                [*argv, f"dir:{image['directory']}", destination],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode:
                raise RegistryError(f"skopeo copy to {destination}: {done.stderr.strip()[-500:]}")
        pushed.append(image["ref"])
    return pushed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="push a bundle's images into a registry")
    parser.add_argument(
        "--check", action="store_true", help="say what would be pushed; push nothing"
    )
    parser.add_argument("bundle", type=Path, help="the bundle's directory")
    parser.add_argument(
        "registry", nargs="?", default="", help="the registry's URL (http://HOST:PORT)"
    )
    args = parser.parse_args(argv)
    try:
        images = bundled_images(args.bundle)
        pushed = push(images, args.registry, write=not args.check) if args.registry else []
    except (RegistryError, OSError, KeyError, ValueError) as error:
        print(f"registry_images.py: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"images": images, "pushed": pushed}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
