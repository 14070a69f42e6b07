"""`aiprov bundle serve`: real servers for each part of a bundle, and the overlay
that points the roles at them.

- wheels: pypiserver (no fallback to PyPI), a PEP 503 index;
- models: Olah (offline), the Hugging Face-compatible hub the sandbox uses,
  over git repositories made from the bundle's model directories: small files
  as git blobs, large ones as LFS pointers whose objects are hard links to the
  bundle's files (no second copy);
- distribution packages: the flat APT repository over HTTP (Python's
  http.server: static files, as apt asks for them);
- images: not served yet (a registry loading the docker-archives is missing).

The servers are plain processes (setsid) that run until `--stop`; their state
and logs live in DIR/.serve. The overlay (extra variables, `-e @FILE`, which
outrank the inventory) sets python_env_pip_index_url, models_hf_endpoint and
base_apt_repositories (with base_apt_repositories_only, so an offline host asks
no other archive).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from aiprov import sandbox
from aiprov.bundle import BundleError, Manifest

SERVE_DIR = ".serve"
OVERLAY = "overlay.yml"
# Offsets from --port: the index, the hub, the APT repository.
PYPI, HUB, APT = 0, 1, 2
DEFAULT_PORT = 8780
# Files above this size are LFS objects in the hub's repositories, as on real hubs.
LFS_MIN_BYTES = 1 << 20
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "aiprov bundle",
    "GIT_AUTHOR_EMAIL": "aiprov@localhost",
    "GIT_COMMITTER_NAME": "aiprov bundle",
    "GIT_COMMITTER_EMAIL": "aiprov@localhost",
    "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z",
}


@dataclass
class Served:
    what: str
    url: str
    pid: int


def _git(repo: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | _GIT_ENV,
    )
    if done.returncode:
        raise BundleError(f"git {args[0]} in {repo}: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def hub_repository(root: Path, model_dir: Path, repos: Path) -> str:
    """A git repository Olah serves, made from one bundled model; returns ORG/NAME.

    Built with git's plumbing, so no file is copied: blobs for small files,
    LFS pointers plus hard-linked LFS objects for large ones. The branch is the
    catalog's revision (main or master), so the hosts' catalog needs no change.
    """
    marker = json.loads((model_dir / ".aiprov-model.json").read_text())
    identity = marker["identity"]
    name, branch = identity["repo"], identity["revision"]
    repo = repos / "models" / name
    stamp = repo / ".git" / "aiprov-source-commit"
    if stamp.exists() and stamp.read_text() == marker["commit"]:
        return name
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q", "-b", branch)
    index = repo / ".git" / "index"
    index.unlink(missing_ok=True)
    for record in marker["files"]:
        source = model_dir / record["path"]
        if record["size"] > LFS_MIN_BYTES:
            oid = record["sha256"]
            obj = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
            obj.parent.mkdir(parents=True, exist_ok=True)
            if not obj.exists():
                os.link(source, obj)
            pointer = (
                "version https://git-lfs.github.com/spec/v1\n"
                f"oid sha256:{oid}\nsize {record['size']}\n"
            )
            blob = _git(repo, "hash-object", "-w", "--stdin", stdin=pointer)
        else:
            blob = _git(repo, "hash-object", "-w", str(source))
        _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{record['path']}")
    tree = _git(repo, "write-tree")
    commit = _git(repo, "commit-tree", tree, "-m", f"aiprov bundle: {name} at {marker['commit']}")
    _git(repo, "update-ref", f"refs/heads/{branch}", commit)
    _git(repo, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    stamp.write_text(marker["commit"])
    return name


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
    return [what for what in ("index", "hub", "apt") if stop_one(state, what)]


def _bin(name: str) -> str:
    """A console script of aiprov's own environment (pypiserver, olah)."""
    return str(Path(sys.executable).parent / name)


def serve(root: Path, manifest: Manifest, address: str, port: int) -> tuple[list[Served], Path]:
    """Start a server per part the bundle has; write the overlay; return both."""
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
        names = [hub_repository(root, d, repos) for d in model_dirs]
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
    path = state / OVERLAY
    header = f"# Written by `aiprov bundle serve {root}`: use it as `-e @{path}`.\n"
    path.write_text(header + yaml.safe_dump(overlay, sort_keys=True))
    return served, path
