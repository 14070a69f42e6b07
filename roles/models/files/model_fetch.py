#!/usr/bin/env python3
"""Fetch one catalog model into its directory, verify it, and record it.

Run by the aiprov models role (tasks/fetch.yml): with the tools venv's python
on hosts that download from a hub, with the system python3 on hosts that copy
from the fleet cache. Reads a JSON spec on stdin and prints one JSON line:
{"changed": bool, ...} or {"failed": true, "error": "..."} (exit 1).

Spec: id, hub (huggingface|modelscope), repo, revision, allow_patterns,
ignore_patterns, local_dir, endpoint, source ("hub" or the fleet cache's
rsync://HOST:PORT/ID/ URL), tools_bin, reserve_bytes, bwlimit_kib, check, token.
A token comes in the spec (stdin, so never on a command line) or from the
environment; it reaches the hub clients only through their environment
(HF_TOKEN, MODELSCOPE_API_TOKEN) and is never printed or recorded.

A complete model has a marker file (MARKER) listing the resolved commit and
every file with its size and sha256; a re-run that finds a matching marker and
the files at their sizes does not touch the network.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MARKER = ".aiprov-model.json"
# Partial hub downloads live here until verified; kept across runs to resume.
PARTIAL_DIR = ".aiprov-partial"
IDENTITY_KEYS = ("hub", "repo", "revision", "allow_patterns", "ignore_patterns")
TOKEN_ENV = {"huggingface": "HF_TOKEN", "modelscope": "MODELSCOPE_API_TOKEN"}


class FetchError(Exception):
    """A failure with a message meant for the operator."""


def selected(path: str, allow: list[str], ignore: list[str]) -> bool:
    """huggingface_hub's filter_repo_objects rule: "dir/" means everything below dir."""

    def matches(patterns: list[str]) -> bool:
        return any(fnmatch.fnmatch(path, p + "*" if p.endswith("/") else p) for p in patterns)

    return (not allow or matches(allow)) and not (ignore and matches(ignore))


def identity(spec: dict[str, Any]) -> dict[str, Any]:
    """What the operator asked for; a marker for anything else is stale."""
    return {key: spec[key] for key in IDENTITY_KEYS}


def read_marker(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_complete(spec: dict[str, Any], marker: dict[str, Any] | None) -> bool:
    """Marker matches the request and every file is there at its size (no hashing)."""
    if not marker or marker.get("identity") != identity(spec):
        return False
    local = Path(spec["local_dir"])
    for entry in marker.get("files", []):
        path = local / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["size"]:
            return False
    return True


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def present_bytes(local: Path, entry: dict[str, Any]) -> int:
    """Bytes of this file already on disk (complete, or partial from a cut run)."""
    for candidate in (local / entry["path"], local / PARTIAL_DIR / (entry["path"] + ".part")):
        if candidate.is_file():
            return min(candidate.stat().st_size, entry["size"])
    return 0


def check_disk(spec: dict[str, Any], files: list[dict[str, Any]]) -> int:
    """Fail before downloading when the rest of the model does not fit."""
    local = Path(spec["local_dir"])
    needed = sum(entry["size"] - present_bytes(local, entry) for entry in files)
    probe = local
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    reserve = int(spec.get("reserve_bytes", 0))
    if free < needed + reserve:
        raise FetchError(
            f"not enough disk space for model {spec['id']} in {local}: needs {human(needed)}"
            f" (plus {human(reserve)} reserve), {human(free)} free on the filesystem of {probe}"
        )
    return needed


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- Hugging Face --------------------------------------------------------------


def hf_metadata(spec: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Resolved commit and the selected files (size; sha256 for LFS files)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=spec["endpoint"] or None)  # HF_TOKEN comes from the environment
    commit = api.model_info(spec["repo"], revision=spec["revision"]).sha
    files = [
        {"path": item.path, "size": item.size, "sha256": item.lfs.sha256 if item.lfs else None}
        for item in api.list_repo_tree(spec["repo"], revision=commit, recursive=True)
        if isinstance(item, RepoFile)
        and selected(item.path, spec["allow_patterns"], spec["ignore_patterns"])
    ]
    return commit, files


def hf_command(spec: dict[str, Any], commit: str, paths: list[str]) -> list[str]:
    """`hf download` for the given files at the resolved commit (no token here)."""
    return [
        str(Path(spec["tools_bin"]) / "hf"),
        "download",
        spec["repo"],
        *paths,
        "--revision",
        commit,
        "--local-dir",
        spec["local_dir"],
    ]


def hf_environment(spec: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_DISABLE_UPDATE_CHECK="1", HF_HUB_DISABLE_TELEMETRY="1")
    if spec["endpoint"]:
        env["HF_ENDPOINT"] = spec["endpoint"]
    return env


def hf_fetch_resumable(spec: dict[str, Any], commit: str, entry: dict[str, Any]) -> int:
    """Download one large file with huggingface_hub's own HTTP getter, resuming.

    `hf download` names partial files per process and deletes them when it
    fails, so a cut 60 GB shard would start over. Here the partial file has a
    fixed name and the hub client continues it with an HTTP Range request.
    Returns the bytes received.
    """
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    local = Path(spec["local_dir"])
    partial = local / PARTIAL_DIR / (entry["path"] + ".part")
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.touch()
    url = hf_hub_url(
        spec["repo"], entry["path"], revision=commit, endpoint=spec["endpoint"] or None
    )
    with partial.open("r+b") as out:
        resume = out.seek(0, os.SEEK_END)
        if resume < entry["size"]:
            http_get(
                url,
                out,
                resume_size=resume,
                headers=build_hf_headers(),
                expected_size=entry["size"],
            )
    received = entry["size"] - resume
    if entry["sha256"] and sha256_of(partial) != entry["sha256"]:
        partial.unlink()
        raise FetchError(
            f"{entry['path']}: sha256 differs from the hub's; removed, re-run to fetch it again"
        )
    target = local / entry["path"]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.replace(target)
    return received


def fetch_huggingface(spec: dict[str, Any]) -> tuple[str, list[dict[str, Any]], int]:
    commit, files = hf_metadata(spec)
    check_disk(spec, files)
    local = Path(spec["local_dir"])
    received = 0
    for entry in files:
        target = local / entry["path"]
        if entry["sha256"] and not (target.is_file() and target.stat().st_size == entry["size"]):
            received += hf_fetch_resumable(spec, commit, entry)
    small = [entry["path"] for entry in files if not entry["sha256"]]
    if small:
        _run(hf_command(spec, commit, small), hf_environment(spec))
        received += sum(entry["size"] for entry in files if not entry["sha256"])
    return commit, files, received


# --- ModelScope ----------------------------------------------------------------


def ms_metadata(spec: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Selected files with size and sha256. The listing names no commit id:
    the revision as given is what gets recorded."""
    from modelscope_hub import HubApi

    api = HubApi(endpoint=spec["endpoint"] or None)  # MODELSCOPE_API_TOKEN from the environment
    files = [
        {"path": item.path, "size": item.size, "sha256": item.sha256}
        for item in api.list_repo_files(spec["repo"], "model", revision=spec["revision"])
        if not item.is_dir and selected(item.path, spec["allow_patterns"], spec["ignore_patterns"])
    ]
    return spec["revision"], files


def ms_command(spec: dict[str, Any]) -> list[str]:
    """`modelscope download`: it keeps `.incomplete` files and resumes them with Range."""
    argv = [
        str(Path(spec["tools_bin"]) / "modelscope"),
        "download",
        spec["repo"],
        "--revision",
        spec["revision"],
        "--local-dir",
        spec["local_dir"],
    ]
    if spec["allow_patterns"]:
        argv += ["--include", *spec["allow_patterns"]]
    if spec["ignore_patterns"]:
        argv += ["--exclude", *spec["ignore_patterns"]]
    return argv


def ms_environment(spec: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ, MODELSCOPE_DOWNLOAD_INTRA_CLOUD="false")
    if spec["endpoint"]:
        env["MODELSCOPE_ENDPOINT"] = spec["endpoint"]
    return env


def fetch_modelscope(spec: dict[str, Any]) -> tuple[str, list[dict[str, Any]], int]:
    commit, files = ms_metadata(spec)
    needed = check_disk(spec, files)
    _run(ms_command(spec), ms_environment(spec))
    return commit, files, needed


# --- Fleet cache (rsync daemon on the cache host) ----------------------------


def rsync_command(spec: dict[str, Any]) -> list[str]:
    """Copy the listed files from the cache, continuing cut files in place.

    --inplace keeps what arrived even when the copy is killed (SIGKILL, power
    loss); --append-verify sends only the missing tail and then checks the
    whole file's checksum.
    """
    argv = [
        "rsync",
        "--recursive",
        "--times",
        "--chmod=D755,F644",
        "--inplace",
        "--append-verify",
        "--stats",
        "--files-from=-",
    ]
    if int(spec.get("bwlimit_kib", 0)):
        argv.append(f"--bwlimit={int(spec['bwlimit_kib'])}")
    return [*argv, spec["source"], spec["local_dir"] + "/"]


def cache_metadata(spec: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    with tempfile.TemporaryDirectory() as tmp:
        copy = subprocess.run(
            ["rsync", spec["source"] + MARKER, tmp + "/"],
            capture_output=True,
            text=True,
            check=False,
        )
        marker = read_marker(Path(tmp)) if copy.returncode == 0 else None
    if marker is None:
        why = copy.stderr.strip().splitlines()[-1] if copy.stderr.strip() else "no marker"
        raise FetchError(
            f"the fleet cache ({spec['source']}) has no complete copy of {spec['id']} yet"
            f" (rsync: {why}); run the models role on the cache host first"
        )
    if marker.get("identity") != identity(spec):
        raise FetchError(
            f"the fleet cache holds {spec['id']} as {marker.get('identity')}, not as asked:"
            f" {identity(spec)}; run the models role on the cache host first"
        )
    return marker["commit"], marker["files"]


def fetch_cache(spec: dict[str, Any]) -> tuple[str, list[dict[str, Any]], int]:
    commit, files = cache_metadata(spec)
    check_disk(spec, files)
    Path(spec["local_dir"]).mkdir(parents=True, exist_ok=True)
    stdin = "".join(entry["path"] + "\n" for entry in files)
    output = _run(rsync_command(spec), dict(os.environ), stdin=stdin)
    found = re.search(r"Total bytes received: ([\d,]+)", output)
    return commit, files, int(found.group(1).replace(",", "")) if found else 0


# --- Verification and the marker ---------------------------------------------


def verify(spec: dict[str, Any], files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check sizes and sha256; return the files with every sha256 filled in.

    A file that fails is removed so the next run fetches it again.
    """
    if not files:
        raise FetchError(
            f"no file of {spec['repo']} at {spec['revision']} matches allow_patterns"
            f" {spec['allow_patterns']} and ignore_patterns {spec['ignore_patterns']}"
        )
    local = Path(spec["local_dir"])
    problems, recorded = [], []
    for entry in files:
        path = local / entry["path"]
        if not path.is_file():
            problems.append(f"{entry['path']}: missing after download")
            continue
        size = path.stat().st_size
        if size != entry["size"]:
            problems.append(f"{entry['path']}: {size} bytes, the hub says {entry['size']}")
            path.unlink()
            continue
        digest = sha256_of(path)
        if entry.get("sha256") and digest != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 {digest}, the hub says {entry['sha256']}")
            path.unlink()
            continue
        recorded.append({"path": entry["path"], "size": size, "sha256": digest})
    if problems:
        raise FetchError(
            f"model {spec['id']} failed verification (bad files removed; re-run to fetch them): "
            + "; ".join(problems)
        )
    return recorded


def write_marker(spec: dict[str, Any], commit: str, files: list[dict[str, Any]]) -> None:
    local = Path(spec["local_dir"])
    local.mkdir(parents=True, exist_ok=True)
    marker = {
        "id": spec["id"],
        "identity": identity(spec),
        "commit": commit,
        "source": spec["source"],
        "files": files,
    }
    tmp = local / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=1) + "\n")
    tmp.replace(local / MARKER)
    shutil.rmtree(local / PARTIAL_DIR, ignore_errors=True)


def _run(argv: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise FetchError(f"{Path(argv[0]).name} {argv[1]} exited {done.returncode}: {tail}")
    return done.stdout


FETCHERS = {"huggingface": fetch_huggingface, "modelscope": fetch_modelscope}


def take_token(spec: dict[str, Any]) -> None:
    """Move the spec's token into this process's environment, where the hub
    libraries and the clients started from here read it."""
    token = spec.pop("token", "") or ""
    if token:
        os.environ[TOKEN_ENV[spec["hub"]]] = token


def fetch(spec: dict[str, Any]) -> dict[str, Any]:
    local = Path(spec["local_dir"])
    if is_complete(spec, read_marker(local)):
        return {"changed": False, "id": spec["id"], "commit": read_marker(local)["commit"]}
    if str(spec.get("check")).lower() == "true":
        return {"changed": True, "id": spec["id"]}
    fetcher = fetch_cache if spec["source"] != "hub" else FETCHERS[spec["hub"]]
    commit, files, received = fetcher(spec)
    recorded = verify(spec, files)
    write_marker(spec, commit, recorded)
    return {
        "changed": True,
        "id": spec["id"],
        "commit": commit,
        "files": len(recorded),
        "bytes": sum(entry["size"] for entry in recorded),
        "received_bytes": received,
        "source": spec["source"],
    }


def main() -> int:
    spec = json.load(sys.stdin)
    take_token(spec)
    try:
        result = fetch(spec)
    except FetchError as error:
        print(json.dumps({"failed": True, "id": spec.get("id"), "error": str(error)}))
        return 1
    except Exception as error:  # hub client errors: report, never a traceback with headers
        message = f"{type(error).__name__}: {error}"
        print(json.dumps({"failed": True, "id": spec.get("id"), "error": message}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
