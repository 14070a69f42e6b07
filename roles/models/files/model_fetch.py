#!/usr/bin/env python3
"""Fetch one catalog model into its directory, verify it, and record it.

Run by the aiprov models role (tasks/fetch.yml): with the tools venv's python
on hosts that download from a hub, with the system python3 on hosts that copy
from the fleet cache. Reads a JSON spec on stdin and prints one JSON line:
{"changed": bool, ...} or {"failed": true, "error": "..."} (exit 1).

Spec: id, hub (huggingface|modelscope), repo, revision, allow_patterns,
ignore_patterns, local_dir, endpoint, hub_timeout (seconds), source ("hub" or the fleet cache's
rsync://HOST:PORT/ID/ URL), tools_bin, reserve_bytes, bwlimit_kib, check, token,
follow (copy from the cache while its host downloads), follow_timeout (seconds).
A token comes in the spec (stdin, so never on a command line) or from the
environment; it reaches the hub clients only through their environment
(HF_TOKEN, MODELSCOPE_API_TOKEN) and is never printed or recorded.

A complete model has a marker file (MARKER) listing the resolved commit and
every file with its size and sha256; a re-run that finds a matching marker and
the files at their sizes does not touch the network.

Fleet cache, streaming: the cache host publishes its plan (PLAN: the commit and
the files it is about to download), moves each file to its final path only
when the file is complete, and rewrites PROGRESS while bytes arrive (its rsync
daemon hides partial files). A host that follows it copies each planned file as
soon as it is there at its full size, until the marker appears.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

MARKER = ".aiprov-model.json"
# For hosts following a hub download through the fleet cache: what it is about to
# put in place, and how far it is. Both go when the marker is written.
PLAN = ".aiprov-plan.json"
PROGRESS = ".aiprov-progress.json"
# Partial hub downloads live here until verified; kept across runs to resume.
PARTIAL_DIR = ".aiprov-partial"
# How often a follower looks at the cache host's progress.
FOLLOW_POLL_S = 0.5
IDENTITY_KEYS = ("hub", "repo", "revision", "allow_patterns", "ignore_patterns")
TOKEN_ENV = {"huggingface": "HF_TOKEN", "modelscope": "MODELSCOPE_API_TOKEN"}


class FetchError(Exception):
    """A failure with a message meant for the operator."""


class Fetched(NamedTuple):
    commit: str
    files: list[dict[str, Any]]
    received: int  # bytes that came over the network
    streamed: int = 0  # of those, copied from the cache while its host was downloading


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


def _stat_key(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def remember_digest(path: Path, digest: str, digests: dict[str, Any]) -> None:
    """Keep a digest computed during the download for verify(), tied to the file's state."""
    digests[str(path)] = (_stat_key(path), digest)


def digest_of(path: Path, digests: dict[str, Any]) -> str:
    """sha256 of the file, reusing one computed earlier if the file has not changed since
    (any write or rename changes its ctime)."""
    known = digests.get(str(path))
    if known and known[0] == _stat_key(path):
        return known[1]
    digest = sha256_of(path)
    remember_digest(path, digest, digests)
    return digest


def bytes_on_disk(local: Path) -> int:
    """Everything under the model directory, partial downloads included."""
    total = 0
    for parent, _dirs, names in os.walk(local):
        for name in names:
            if not name.startswith(PROGRESS):
                with contextlib.suppress(OSError):  # renamed meanwhile
                    total += (Path(parent) / name).stat().st_size
    return total


@contextlib.contextmanager
def progress_beacon(local: Path, period: float = 1.0):
    """While a hub client downloads, rewrite PROGRESS whenever more bytes are on disk:
    hosts following this download through the cache see it advance (or stall)."""
    stop = threading.Event()

    def beat() -> None:
        last = -1
        while not stop.wait(period):
            size = bytes_on_disk(local)
            if size != last:
                write_json(local / PROGRESS, {"bytes_on_disk": size})
                last = size

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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


def partial_path(spec: dict[str, Any], entry: dict[str, Any]) -> Path:
    return Path(spec["local_dir"]) / PARTIAL_DIR / (entry["path"] + ".part")


def hf_fetch_resumable(spec: dict[str, Any], commit: str, entry: dict[str, Any]) -> int:
    """Download one large file with huggingface_hub's own HTTP getter, resuming,
    into its partial file (place_verified() puts it in place).

    `hf download` names partial files per process and deletes them when it
    fails, so a cut 60 GB shard would start over. Here the partial file has a
    fixed name and the hub client continues it with an HTTP Range request.
    Returns the bytes received.
    """
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    partial = partial_path(spec, entry)
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
    return entry["size"] - resume


def place_verified(spec: dict[str, Any], entry: dict[str, Any], digests: dict[str, Any]) -> None:
    """Check a downloaded file's sha256 and only then move it to its final path,
    where hosts following this download through the fleet cache copy it."""
    partial = partial_path(spec, entry)
    digest = sha256_of(partial)
    if digest != entry["sha256"]:
        partial.unlink()
        raise FetchError(
            f"{entry['path']}: sha256 differs from the hub's; removed, re-run to fetch it again"
        )
    target = Path(spec["local_dir"]) / entry["path"]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.replace(target)
    remember_digest(target, digest, digests)


def fetch_huggingface(spec: dict[str, Any], digests: dict[str, Any]) -> Fetched:
    commit, files = hf_metadata(spec)
    check_disk(spec, files)
    write_plan(spec, commit, files)
    local = Path(spec["local_dir"])
    # The small files' `hf download` starts first and runs alongside the weights:
    # its start-up (imports, a second or more) then costs no time on the link.
    small = [entry["path"] for entry in files if not entry["sha256"]]
    client = Background(hf_command(spec, commit, small), hf_environment(spec)) if small else None
    received = sum(entry["size"] for entry in files if not entry["sha256"])
    # Each file is hashed and placed while the next one downloads: the link does not wait.
    with progress_beacon(local), ThreadPoolExecutor(max_workers=1) as placer:
        try:
            placed = []
            for entry in files:
                target = local / entry["path"]
                complete = target.is_file() and target.stat().st_size == entry["size"]
                if entry["sha256"] and not complete:
                    received += hf_fetch_resumable(spec, commit, entry)
                    placed.append(placer.submit(place_verified, spec, entry, digests))
            for placing in placed:
                placing.result()
        except BaseException:
            if client:
                client.stop()
            raise
        if client:
            client.wait()
    return Fetched(commit, files, received)


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


def fetch_modelscope(spec: dict[str, Any], digests: dict[str, Any]) -> Fetched:
    commit, files = ms_metadata(spec)
    needed = check_disk(spec, files)
    write_plan(spec, commit, files)
    with progress_beacon(Path(spec["local_dir"])):
        _run(ms_command(spec), ms_environment(spec))
    return Fetched(commit, files, needed)


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


def copy_from_cache(spec: dict[str, Any], paths: list[str]) -> int:
    """Copy these files from the cache; returns the bytes received."""
    Path(spec["local_dir"]).mkdir(parents=True, exist_ok=True)
    stdin = "".join(path + "\n" for path in paths)
    output = _run(rsync_command(spec), dict(os.environ), stdin=stdin)
    found = re.search(r"Total bytes received: ([\d,]+)", output)
    return int(found.group(1).replace(",", "")) if found else 0


def cache_file(spec: dict[str, Any], name: str) -> tuple[dict[str, Any] | None, str]:
    """One JSON file (the marker or the plan) from the cache, or None and rsync's reason."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = subprocess.run(
            ["rsync", spec["source"] + name, tmp + "/"],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            return json.loads((Path(tmp) / name).read_text()), ""
        except (OSError, ValueError):
            lines = copy.stderr.strip().splitlines()
            return None, lines[-1] if lines else f"no {name}"


def parse_listing(text: str) -> dict[str, int]:
    """Regular files and their sizes from `rsync --list-only --recursive` output
    (`-rw-r--r--     52,428,800 2026/11/21 09:25:26 path`)."""
    files = {}
    for line in text.splitlines():
        fields = line.split(None, 4)
        if len(fields) == 5 and fields[0].startswith("-"):
            files[fields[4]] = int(re.sub(r"\D", "", fields[1]))
    return files


def cache_listing(spec: dict[str, Any]) -> tuple[str, str]:
    """The cache's model directory as rsync lists it (names, sizes, times), and
    rsync's reason when it cannot (e.g. the directory does not exist yet)."""
    done = subprocess.run(
        ["rsync", "--list-only", "--recursive", spec["source"]],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stderr.strip().splitlines()
    return done.stdout, lines[-1] if done.returncode and lines else ""


def streamable(
    listing: dict[str, int], planned: list[dict[str, Any]], local: Path
) -> list[dict[str, Any]]:
    """The planned files a follower may copy now: at their final path and full size on
    the cache host (which puts them there only when complete), and not yet complete here.
    The cache's daemon hides partial downloads (.aiprov-partial/, the clients' .cache/).
    """
    ready = []
    for entry in planned:
        mine = local / entry["path"]
        if listing.get(entry["path"]) == entry["size"] and not (
            mine.is_file() and mine.stat().st_size == entry["size"]
        ):
            ready.append(entry)
    return ready


def follow_cache(
    spec: dict[str, Any],
    digests: dict[str, Any],
    clock: Any = time.monotonic,
    sleep: Any = time.sleep,
) -> int:
    """Copy the cache host's files as it completes them, until its marker appears.

    Progress is any change in the cache's listing (new files, PROGRESS rewritten);
    none for follow_timeout seconds fails with the last reason rsync gave. Files
    are hashed as they arrive, while the cache host is still downloading.
    Returns the bytes received before the marker.
    """
    local = Path(spec["local_dir"])
    timeout = float(spec.get("follow_timeout", 300))
    streamed, plan = 0, None
    seen, since = None, clock()
    while True:
        text, why = cache_listing(spec)
        listing = parse_listing(text)
        if MARKER in listing:
            marker, why = cache_file(spec, MARKER)
            if marker and marker.get("identity") == identity(spec):
                return streamed
            why = why or f"its marker is for {marker.get('identity') if marker else None}"
        if plan is None and PLAN in listing:
            candidate = cache_file(spec, PLAN)[0]
            if candidate and candidate.get("identity") == identity(spec):
                check_disk(spec, candidate["files"])
                plan = candidate
        ready = streamable(listing, plan["files"], local) if plan else []
        if ready:
            try:
                streamed += copy_from_cache(spec, [entry["path"] for entry in ready])
            except FetchError as error:  # e.g. a file the cache host removed meanwhile
                why, ready = str(error), []
            for entry in ready:
                path = local / entry["path"]
                if path.is_file() and path.stat().st_size == entry["size"]:
                    digest_of(path, digests)
        if text != seen:
            seen, since = text, clock()
        elif clock() - since > timeout:
            raise FetchError(
                f"the fleet cache ({spec['source']}) made no progress on {spec['id']} for"
                f" {timeout:.0f} s and has no complete copy (rsync: {why or 'no marker'});"
                " look at the models role's result on the cache host (models_cache_host)"
                " and re-run"
            )
        if not ready:
            sleep(FOLLOW_POLL_S)


def cache_metadata(spec: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    marker, why = cache_file(spec, MARKER)
    if marker is None:
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


def fetch_cache(spec: dict[str, Any], digests: dict[str, Any]) -> Fetched:
    """Copy from the cache: following its host's download when it runs alongside
    (spec follow), then a last pass over the marker's files."""
    following = str(spec.get("follow")).lower() == "true"
    streamed = follow_cache(spec, digests) if following else 0
    commit, files = cache_metadata(spec)
    check_disk(spec, files)
    received = copy_from_cache(spec, [entry["path"] for entry in files])
    return Fetched(commit, files, streamed + received, streamed)


# --- Verification and the marker ---------------------------------------------


def verify(
    spec: dict[str, Any], files: list[dict[str, Any]], digests: dict[str, Any]
) -> list[dict[str, Any]]:
    """Check sizes and sha256; return the files with every sha256 filled in.

    A file hashed during the download and not changed since is not read again.
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
        digest = digest_of(path, digests)
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


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Whole or not at all: readers (followers, re-runs) never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=1) + "\n")
    tmp.replace(path)


def write_plan(spec: dict[str, Any], commit: str, files: list[dict[str, Any]]) -> None:
    """What this download is about to put in place, for the hosts that follow it."""
    plan = {"identity": identity(spec), "commit": commit, "files": files}
    write_json(Path(spec["local_dir"]) / PLAN, plan)


def write_marker(spec: dict[str, Any], commit: str, files: list[dict[str, Any]]) -> None:
    local = Path(spec["local_dir"])
    marker = {
        "id": spec["id"],
        "identity": identity(spec),
        "commit": commit,
        "source": spec["source"],
        "files": files,
    }
    write_json(local / MARKER, marker)
    (local / PLAN).unlink(missing_ok=True)
    (local / PROGRESS).unlink(missing_ok=True)
    shutil.rmtree(local / PARTIAL_DIR, ignore_errors=True)


def _run(argv: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise FetchError(f"{Path(argv[0]).name} {argv[1]} exited {done.returncode}: {tail}")
    return done.stdout


class Background:
    """A client running alongside the download. Its output goes to a file: nobody
    reads a pipe meanwhile."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.argv = argv
        self.output = tempfile.TemporaryFile()  # noqa: SIM115  (closed by stop() or wait())
        self.process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.output.close()

    def wait(self) -> None:
        code = self.process.wait()
        self.output.seek(0)
        text = self.output.read().decode(errors="replace")
        self.output.close()
        if code != 0:
            tail = " | ".join(text.strip().splitlines()[-3:])
            raise FetchError(f"{Path(self.argv[0]).name} {self.argv[1]} exited {code}: {tail}")


FETCHERS = {"huggingface": fetch_huggingface, "modelscope": fetch_modelscope}


def take_token(spec: dict[str, Any]) -> None:
    """Move the spec's token into this process's environment, where the hub
    libraries and the clients started from here read it."""
    token = spec.pop("token", "") or ""
    if token:
        os.environ[TOKEN_ENV[spec["hub"]]] = token


def set_hub_timeouts(spec: dict[str, Any]) -> None:
    """The hf library reads its timeouts once, at import (imports here are
    lazy), and the clients started from here inherit this environment."""
    seconds = str(spec.get("hub_timeout") or 60)
    os.environ["HF_HUB_ETAG_TIMEOUT"] = seconds
    os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] = seconds


def fetch(spec: dict[str, Any]) -> dict[str, Any]:
    local = Path(spec["local_dir"])
    if is_complete(spec, read_marker(local)):
        return {"changed": False, "id": spec["id"], "commit": read_marker(local)["commit"]}
    if str(spec.get("check")).lower() == "true":
        return {"changed": True, "id": spec["id"]}
    fetcher = fetch_cache if spec["source"] != "hub" else FETCHERS[spec["hub"]]
    digests: dict[str, Any] = {}
    fetched = fetcher(spec, digests)
    recorded = verify(spec, fetched.files, digests)
    write_marker(spec, fetched.commit, recorded)
    return {
        "changed": True,
        "id": spec["id"],
        "commit": fetched.commit,
        "files": len(recorded),
        "bytes": sum(entry["size"] for entry in recorded),
        "received_bytes": fetched.received,
        "streamed_bytes": fetched.streamed,
        "source": spec["source"],
    }


def main() -> int:
    spec = json.load(sys.stdin)
    take_token(spec)
    set_hub_timeouts(spec)
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
