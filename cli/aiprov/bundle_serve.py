"""`aiprov bundle serve`: real servers for each part of a bundle, and the overlay
that points the roles at them.

- wheels: pypiserver (no fallback to PyPI), a PEP 503 index;
- models: Olah (offline), the Hugging Face-compatible hub the sandbox uses,
  over git repositories made from the bundle's model directories: small files
  as git blobs, large ones as LFS pointers whose objects are hard links to the
  bundle's files (no second copy);
- distribution packages: the flat APT repository over HTTP (Python's
  http.server: static files, as apt asks for them);
- images: a registry (CNCF distribution, Debian's docker-registry) into which
  skopeo pushes each bundled `dir:` image as is (its digest is the source
  registry's), skipping those it holds already (the bundle_host role's
  registry_images.py).

The servers are plain processes (setsid) that run until `--stop`; their state
and logs live in DIR/.serve. The overlay (extra variables, `-e @FILE`, which
outrank the inventory) sets python_env_pip_index_url, models_hf_endpoint and
base_apt_repositories (with base_apt_repositories_only, so an offline host asks
no other archive), and for images docker_registry_mirrors, the daemon's insecure
registries and the registry variables of the roles whose images are bundled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from aiprov import bundle_images, paths, sandbox
from aiprov.bundle import BundleError, Manifest

SERVE_DIR = ".serve"
OVERLAY = "overlay.yml"
# Offsets from --port: the index, the hub, the APT repository, the image registry.
PYPI, HUB, APT, REGISTRY = 0, 1, 2, 3
SERVERS = ("index", "hub", "apt", "registry")
DEFAULT_PORT = 8780
# The bundle_host role's scripts that make the hub's git repositories and push
# the images into the registry: one home for each, run by the role on its
# host and loaded here.
HUB_HELPER = "roles/bundle_host/files/hub_repos.py"
REGISTRY_HELPER = "roles/bundle_host/files/registry_images.py"


@dataclass
class Served:
    what: str
    url: str
    pid: int
    detail: str = ""


def hub_helper():
    """The bundle_host role's hub_repos.py."""
    return paths.role_script(HUB_HELPER, "aiprov_hub_repos")


def registry_helper():
    """The bundle_host role's registry_images.py."""
    return paths.role_script(REGISTRY_HELPER, "aiprov_registry_images")


def _start(state: Path, what: str, argv: list[str], cwd: Path | None = None) -> int:
    stop_one(state, what)
    log = (state / f"{what}.log").open("w")
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # outlives `aiprov bundle serve`
    )
    (state / f"{what}.pid").write_text(str(process.pid))
    return process.pid


def _wait(state: Path, what: str, url: str, expected: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    problem = ""
    while time.monotonic() < deadline:
        problem = sandbox._probe(url, expected)
        if not problem:
            return
        time.sleep(0.5)
    tail = (state / f"{what}.log").read_text()[-800:]
    raise BundleError(
        f"the bundle's {what} does not answer at {url}: {problem}; its log ends: {tail}"
    )


def stop_one(state: Path, what: str) -> bool:
    pid_file = state / f"{what}.pid"
    if not pid_file.exists():
        return False
    with contextlib.suppress(ProcessLookupError, ValueError):
        os.killpg(int(pid_file.read_text()), signal.SIGTERM)
    pid_file.unlink()
    return True


def stop(root: Path) -> list[str]:
    state = root / SERVE_DIR
    return [what for what in SERVERS if stop_one(state, what)]


def _bin(name: str) -> str:
    """A console script of aiprov's own environment (pypiserver, olah)."""
    return str(Path(sys.executable).parent / name)


def _registry_config(state: Path, address: str, port: int) -> Path:
    """distribution's configuration: its filesystem storage under .serve, plain HTTP."""
    config = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(state / "registry")}},
        "http": {"addr": f"{address}:{port}"},
    }
    path = state / "registry.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def serve(
    root: Path, manifest: Manifest, address: str, port: int
) -> tuple[list[Served], Path, list[str]]:
    """Start a server per part the bundle has; write the overlay; return both and
    notes on what the overlay does not cover."""
    state = root / SERVE_DIR
    state.mkdir(exist_ok=True)
    served: list[Served] = []
    overlay: dict = {}
    base = f"http://{address}"
    if manifest.part("wheels"):
        url = f"{base}:{port + PYPI}"
        argv = [
            _bin("pypi-server"),
            "run",
            "--disable-fallback",
            "-i",
            address,
            "-p",
            str(port + PYPI),
        ]
        pid = _start(state, "index", [*argv, str(root / "wheels")])
        first = sorted(manifest.part("wheels"), key=lambda i: i.name)[0]
        _wait(state, "index", f"{url}/simple/{first.name}/", first.path.rsplit("/", 1)[-1])
        served.append(Served("index", f"{url}/simple/", pid))
        overlay["python_env_pip_index_url"] = f"{url}/simple/"
    model_dirs = sorted(
        {
            (root / i.path).parent
            for i in manifest.part("models")
            if i.path.endswith("/.aiprov-model.json")
        }
    )
    if model_dirs:
        repos = state / "hub"
        helper = hub_helper()
        try:
            names = [helper.hub_repository(d, repos)[0] for d in model_dirs]
        except (helper.HubError, OSError) as error:
            raise BundleError(f"the hub's repositories: {error}") from None
        url = f"{base}:{port + HUB}"
        config = state / "olah.toml"
        netloc = f"{address}:{port + HUB}"
        config.write_text(
            f'[basic]\nhost = "{address}"\nport = {port + HUB}\n'
            f'repos-path = "{state / "olah-cache"}"\nmirrors-path = ["{repos}"]\n'
            f'mirror-scheme = "http"\nmirror-netloc = "{netloc}"\nmirror-lfs-netloc = "{netloc}"\n'
            "\n[accessibility]\noffline = true\n"
        )
        # Olah writes its logs to ./logs: run it from the state directory.
        pid = _start(state, "hub", [_bin("olah-cli"), "-c", str(config)], cwd=state)
        branch = json.loads((model_dirs[0] / ".aiprov-model.json").read_text())["identity"][
            "revision"
        ]
        _wait(state, "hub", f"{url}/api/models/{names[0]}/revision/{branch}", '"sha"')
        served.append(Served("hub", url, pid))
        overlay["models_hf_endpoint"] = url
    apt_repos = sorted({Path(i.path).parent.name for i in manifest.part("apt")})
    if apt_repos:
        url = f"{base}:{port + APT}"
        argv = [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            address,
            "--directory",
            str(root / "apt"),
            str(port + APT),
        ]
        pid = _start(state, "apt", argv)
        _wait(state, "apt", f"{url}/{apt_repos[0]}/Packages", "Package: ")
        served.append(Served("apt", url, pid))
        overlay["base_apt_repositories"] = [
            {"name": "aiprov-bundle", "uris": f"{url}/{name}", "suites": "./", "trusted": True}
            for name in apt_repos
        ]
        overlay["base_apt_repositories_only"] = True
    notes: list[str] = []
    pusher = registry_helper()
    images = pusher.bundled_images(root)
    if images:
        for tool in ("docker-registry", "skopeo"):
            if not shutil.which(tool):
                raise BundleError(f"{tool} is not installed (apt-get install {tool})")
        url = f"{base}:{port + REGISTRY}"
        config = _registry_config(state, address, port + REGISTRY)
        pid = _start(state, "registry", ["docker-registry", "serve", str(config)])
        _wait(state, "registry", f"{url}/v2/", "{}")
        try:
            pushed = pusher.push(images, url)
        except pusher.RegistryError as error:
            raise BundleError(f"the bundle's registry: {error}") from None
        served.append(Served("registry", url, pid, f"{len(pushed)} of {len(images)} images pushed"))
        variables, notes = bundle_images.overlay(
            [bundle_images.Image(i["ref"], i["registry_variable"], i["name"]) for i in images],
            f"{address}:{port + REGISTRY}",
        )
        overlay |= variables
    path = state / OVERLAY
    header = f"# Written by `aiprov bundle serve {root}`: use it as `-e @{path}`.\n"
    path.write_text(header + yaml.safe_dump(overlay, sort_keys=True))
    return served, path, notes
