"""`aiprov bundle build`: download what a plan names into a bundle directory.

Each part has its own tool, run here as its upstream documents it:
- wheels: every file of the hosts' locks (aiprov.locks, scripts/gen_locks.py),
  by `pip download --require-hashes` for the lock's Python and platform;
- distribution packages: `apt-get install --download-only` into the bundle's
  pool, inside a container of the target release made from aiprov's own host
  image (only what a minimal host of that release lacks is downloaded), then
  `dpkg-scanpackages` writes the flat repository's index; RPM: `dnf download
  --resolve` and `createrepo_c` in a container of the release (written, not
  proven: no RHEL image or archive here);
- models: the models role's own helper (roles/models/files/model_fetch.py),
  so a bundle's model directory and its sha256 marker are what a host gets;
- images: `skopeo copy` of each stack image for the target's platform into
  skopeo's `dir:` layout (aiprov.bundle_images), digests kept.

Resumable: the manifest is saved after every part, each part skips what it
finds complete (pip keeps downloaded files, apt its pool, the models helper its
marker and partial files, an image whose directory is complete is not copied
again), and a part whose inputs did not change and whose files are all present
is not run again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiprov import bundle, bundle_images, bundle_plan, locks, modelfacts, paths, sandbox
from aiprov.bundle import BundleError, Item, Manifest

Say = Callable[[str], None]
STATE = ".aiprov-bundle"  # per-part inputs of the last complete run
MODEL_HELPER = "roles/models/files/model_fetch.py"
# Build backends for the sdists pip falls back to (the host's pip builds them).
BUILD_REQUIREMENTS = ["setuptools", "wheel"]
_DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_BLOB = re.compile(r"^[0-9a-f]{64}$")  # a blob of skopeo's dir: layout, named by its sha256


@dataclass
class Endpoints:
    huggingface: str
    modelscope: str


@dataclass
class Estimate:
    """--dry-run: bytes per part, and what could only be estimated or not sized."""

    sizes: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _run(argv: list[str], say: Say, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    say("$ " + " ".join(argv[:8]) + (" …" if len(argv) > 8 else ""))
    try:
        return subprocess.run(argv, text=True, check=True, **kwargs)
    except FileNotFoundError:
        raise BundleError(f"{argv[0]} is not installed") from None
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or error.stdout or "").strip().splitlines()[-5:]
        raise BundleError(
            f"{Path(argv[0]).name} exited {error.returncode}: {' | '.join(tail)}"
        ) from None


def _state(root: Path, part: str) -> Any:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((root / STATE / f"{part}.json").read_text())
    return None


def _save_state(root: Path, part: str, inputs: Any) -> None:
    (root / STATE).mkdir(exist_ok=True)
    (root / STATE / f"{part}.json").write_text(json.dumps(inputs, indent=1) + "\n")


def _up_to_date(root: Path, manifest: Manifest, part: str, inputs: Any) -> bool:
    items = manifest.part(part)
    return (
        _state(root, part) == inputs
        and bool(items)
        and all(bundle.is_present(root, i) for i in items)
    )


# --- wheels ------------------------------------------------------------------


def _lock_argv(path: Path, dest: Path, plan: bundle_plan.Plan) -> list[str]:
    """pip's arguments for a lock's files (aiprov.locks: hash-checked, for its
    Python), with the manylinux tags of the target's glibc and architecture in
    place of the lock's one platform."""
    argv = locks.pip_download_argv(locks.read(path), dest)
    at = argv.index("--platform")
    del argv[at : at + 2]
    tags = bundle_plan.platform_tags(plan.glibc, plan.target.arch)
    argv[at:at] = [arg for tag in tags for arg in ("--platform", tag)]
    return [sys.executable, "-m", "pip", *argv]


def wheels(root: Path, plan: bundle_plan.Plan, manifest: Manifest, say: Say) -> None:
    """Every pinned file of the hosts' locks, with the bytes the locks name."""
    if not plan.locks:
        return
    digests = {str(path): locks.sha256(path) for path in plan.locks}
    inputs = {"locks": digests, "build": BUILD_REQUIREMENTS, "target": plan.target.__dict__}
    if _up_to_date(root, manifest, "wheels", inputs):
        say(f"wheels: {len(manifest.part('wheels'))} files already here")
        return
    dest = root / "wheels"
    dest.mkdir(exist_ok=True)
    # Files already in dest are not downloaded again ("File was already downloaded").
    for path in plan.locks:
        say(f"wheels: {path.name}")
        _run([*_lock_argv(path, dest, plan), "--progress-bar", "off"], say)
    # Build backends for a pinned sdist that the host's pip builds (FunASR's jieba).
    build = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    build += ["--python-version", plan.target.python, "--dest", str(dest), *BUILD_REQUIREMENTS]
    _run(build, say)
    files = sorted(p for p in dest.iterdir() if locks.distribution(p.name))
    problems = [
        f"{p.name}: {m}" for p in plan.locks for m in locks.check_files(locks.read(p), files)
    ]
    if problems:
        raise BundleError("wheels do not match their locks: " + "; ".join(problems))
    items = [bundle.item_for(root, p, "wheels", *locks.distribution(p.name)) for p in files]
    manifest.items = [i for i in manifest.items if i.part != "wheels"] + items
    _save_state(root, "wheels", inputs)


def estimate_wheels(plan: bundle_plan.Plan, estimate: Estimate, say: Say) -> None:
    """pip's resolver over each lock without downloading (its --report), then each file's size."""
    total = count = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in plan.locks:
            report = Path(tmp) / f"{path.name}.json"
            argv = _lock_argv(path, Path(tmp) / "unused", plan)
            at = argv.index("--dest")
            argv[argv.index("download")] = "install"
            argv[at : at + 2] = ["--dry-run", "--ignore-installed", "-q", "--report", str(report)]
            _run([*argv, "--target", str(Path(tmp) / "t")], say)
            installs = json.loads(report.read_text())["install"]
            total += sum(_url_size(entry["download_info"]["url"]) for entry in installs)
            count += len(installs)
    estimate.sizes["wheels"] = total
    estimate.counts["wheels"] = count


def _url_size(url: str) -> int:
    if url.startswith("file://"):
        return Path(urllib.request.url2pathname(url.removeprefix("file://"))).stat().st_size
    request = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.headers.get("Content-Length") or 0)


# --- distribution packages ----------------------------------------------------


def _release_image(plan: bundle_plan.Plan) -> str:
    """aiprov's own host image of the target release (built here for Debian)."""
    os_name = plan.target.os
    if os_name not in sandbox.OS_SUITES:
        raise BundleError(
            f"no host image for {os_name} here: resolve its packages in a container of that"
            f" release named {sandbox.image_name(os_name)} (only Debian's are built by aiprov)"
        )
    if sandbox.run_podman("image", "exists", sandbox.image_name(os_name), check=False).returncode:
        sandbox.build_image(os_name)
    return sandbox.image_name(os_name)


# Inside the release's container: the names with a candidate, then those with
# their dependencies (the image's own packages excepted) into the mounted pool.
_APT_SCRIPT = r"""
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
have=""; for p in "$@"; do
  if apt-cache policy "$p" | grep -q 'Candidate: [^(]'; then have="$have $p"
  else echo "$p" >&3; fi
done
mkdir -p /pool/partial
apt-get install -y -qq --no-install-recommends {mode} -o Dir::Cache::archives=/pool $have
rm -rf /pool/partial /pool/lock
"""


def _apt_in_container(
    plan: bundle_plan.Plan, pool: Path, mode: str, say: Say
) -> tuple[str, list[str]]:
    image = _release_image(plan)
    pool.mkdir(parents=True, exist_ok=True)
    script = _APT_SCRIPT.replace("{mode}", mode)
    argv = [
        "podman", "run", "--rm", "-v", f"{pool}:/pool", image,
        "bash", "-c", f"exec 3>/pool/.missing; {script}", "apt", *plan.packages,
    ]  # fmt: skip
    say(f"apt: resolving {len(plan.packages)} packages with their dependencies in {image}")
    done = subprocess.run(
        argv, env=sandbox.podman_env(), capture_output=True, text=True, check=False
    )
    missing_file = pool / ".missing"
    missing = missing_file.read_text().split() if missing_file.exists() else []
    missing_file.unlink(missing_ok=True)
    if done.returncode:
        tail = " | ".join(done.stderr.strip().splitlines()[-5:])
        raise BundleError(f"apt-get in {image} exited {done.returncode}: {tail}")
    return done.stdout, missing


def apt(root: Path, plan: bundle_plan.Plan, manifest: Manifest, say: Say) -> list[str]:
    """The packages as a flat APT repository in apt/<os>/; returns names not in the archive."""
    if plan.family != "Debian":
        rpm(root, plan, manifest, say)
        return []
    inputs = {"packages": plan.packages, "target": plan.target.__dict__}
    if _up_to_date(root, manifest, "apt", inputs):
        say(f"apt: {len(manifest.part('apt'))} files already here")
        return (_state(root, "apt-missing") or {}).get("missing", [])
    repo = root / "apt" / plan.target.os
    _, missing = _apt_in_container(plan, repo, "--download-only", say)
    # A flat repository: `deb [trusted=yes] URL/apt/<os> ./` (see bundle_serve).
    scan = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", "."],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    (repo / "Packages").write_text(scan.stdout)
    items = []
    for path in sorted(repo.glob("*.deb")):
        name, version, _ = path.name.split("_", 2)
        items.append(bundle.item_for(root, path, "apt", name, version.replace("%3a", ":")))
    items.append(bundle.item_for(root, repo / "Packages", "apt", "Packages", plan.suite))
    manifest.items = [i for i in manifest.items if i.part != "apt"] + items
    _save_state(root, "apt", inputs)
    _save_state(root, "apt-missing", {"missing": missing})
    return missing


def estimate_apt(plan: bundle_plan.Plan, estimate: Estimate, say: Say) -> None:
    if plan.family != "Debian":
        estimate.notes.append(f"rpm: {plan.target.os} packages not sized (no RHEL archive here)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        out, missing = _apt_in_container(plan, Path(tmp), "--print-uris", say)
    sizes = [int(line.split()[2]) for line in out.splitlines() if line.startswith("'")]
    estimate.sizes["apt"] = sum(sizes)
    estimate.counts["apt"] = len(sizes)
    if missing:
        estimate.notes.append(f"apt: not in {plan.target.os}'s archive: {', '.join(missing)}")


def rpm(root: Path, plan: bundle_plan.Plan, manifest: Manifest, say: Say) -> None:
    """RHEL: dnf's resolver into the bundle and createrepo_c (written, not proven)."""
    image = os.environ.get("AIPROV_BUNDLE_RHEL_IMAGE", f"aiprov-{plan.target.os}")
    repo = root / "rpm" / plan.target.os
    repo.mkdir(parents=True, exist_ok=True)
    script = (
        "dnf -y -q install dnf-plugins-core createrepo_c && "
        'dnf download -y --resolve --alldeps --destdir /repo "$@" && createrepo_c /repo'
    )
    argv = ["podman", "run", "--rm", "-v", f"{repo}:/repo", image, "bash", "-c", script, "dnf"]
    _run(argv + plan.packages, say, env=sandbox.podman_env())
    items = [
        bundle.item_for(root, path, "rpm", path.name.rsplit("-", 2)[0], path.name.rsplit("-", 2)[1])
        for path in sorted(repo.glob("*.rpm"))
    ]
    items += [
        bundle.item_for(root, p, "rpm", "repodata", p.name) for p in (repo / "repodata").iterdir()
    ]
    manifest.items = [i for i in manifest.items if i.part != "rpm"] + items


# --- models ------------------------------------------------------------------


def _model_spec(entry: dict[str, Any], root: Path, endpoints: Endpoints) -> dict[str, Any]:
    """The models role's helper spec (roles/models/vars/main.yml _models_spec) for the bundle."""
    hub = entry["hub"]
    return {
        "id": entry["id"],
        "hub": hub,
        "repo": entry["repo"],
        "revision": entry.get("revision") or {"huggingface": "main", "modelscope": "master"}[hub],
        "allow_patterns": entry.get("allow_patterns", []),
        "ignore_patterns": entry.get("ignore_patterns", []),
        "local_dir": str(root / "models" / entry["id"]),
        "endpoint": getattr(endpoints, hub),
        "hub_timeout": 60,
        "source": "hub",
        "tools_bin": str(Path(sys.executable).parent),
        "reserve_bytes": 0,
        "bwlimit_kib": 0,
        "check": False,
        "follow": False,
    }


def _model_helper() -> Path:
    return paths.share_dir() / MODEL_HELPER


def models(
    root: Path, plan: bundle_plan.Plan, manifest: Manifest, endpoints: Endpoints, say: Say
) -> None:
    """Each model through the models role's helper: resumable, sha256-checked, with its marker."""
    for entry in plan.models:
        spec = _model_spec(entry, root, endpoints)
        say(f"model {entry['id']}: {entry['hub']} {entry['repo']} from {spec['endpoint']}")
        done = subprocess.run(
            [sys.executable, str(_model_helper())],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            check=False,
        )
        result = json.loads(done.stdout or "{}") if done.stdout.startswith("{") else {}
        if done.returncode or result.get("failed"):
            raise BundleError(
                f"model {entry['id']}: {result.get('error') or done.stderr.strip()[-500:]}"
            )
        local = Path(spec["local_dir"])
        marker = json.loads((local / ".aiprov-model.json").read_text())
        commit = marker["commit"]
        prefix = f"models/{entry['id']}/"
        known = {i.path: i for i in manifest.items if i.path.startswith(prefix)}
        items = []
        for record in marker["files"]:
            path = prefix + record["path"]
            # The helper checked every file's sha256 against the hub: reuse it.
            items.append(
                known.get(path)
                or Item(path, "models", entry["id"], commit, record["size"], record["sha256"])
            )
        items.append(
            bundle.item_for(root, local / ".aiprov-model.json", "models", entry["id"], commit)
        )
        manifest.items = [i for i in manifest.items if not i.path.startswith(prefix)] + items
        say(
            f"model {entry['id']}: {'fetched' if result.get('changed') else 'already here'}"
            f" ({commit[:12]})"
        )


def estimate_models(
    plan: bundle_plan.Plan, endpoints: Endpoints, estimate: Estimate, say: Say
) -> None:
    """The hub's file list (as the helper asks it); where the hub cannot be asked,
    parameters × bits from aiprov's model facts, said to be an estimate."""
    helper = paths.role_script(MODEL_HELPER, "aiprov_model_fetch")
    metadata = {"huggingface": helper.hf_metadata, "modelscope": helper.ms_metadata}
    total = count = 0
    for entry in plan.models:
        spec = _model_spec(entry, Path("/nonexistent"), endpoints)
        try:
            files = metadata[entry["hub"]](spec)[1]
            size = sum(f["size"] or 0 for f in files)
            count += len(files)
            say(
                f"model {entry['id']}: {size / 2**30:.2f} GiB in {len(files)} files"
                " (the hub's list)"
            )
        except Exception as error:  # any hub client failure: fall back to the facts
            size = _size_from_facts(entry)
            reason = f"{type(error).__name__}"
            if size is None:
                estimate.notes.append(
                    f"model {entry['id']}: not sized (hub: {reason}, no model facts)"
                )
                continue
            estimate.notes.append(
                f"model {entry['id']}: {size / 2**30:.1f} GiB estimated from parameters x bits"
                f" (hub {spec['endpoint']} not reachable: {reason})"
            )
        total += size
    estimate.sizes["models"] = total
    estimate.counts["models"] = count


def _size_from_facts(entry: dict[str, Any]) -> int | None:
    facts = modelfacts.from_catalog(entry["repo"], entry["id"])
    if facts is None:
        return None
    bits = facts.quantization.bits if facts.quantization else 16
    return int(facts.params * bits / 8)


# --- container images -----------------------------------------------------------


def images(root: Path, plan: bundle_plan.Plan, manifest: Manifest, say: Say) -> None:
    """Each image for the target's platform by `skopeo copy` into a `dir:` directory
    (bundle_images): the registry's manifest and blobs byte for byte."""
    for image in plan.images:
        ref = image.ref
        directory = root / "images" / bundle_images.directory(ref)
        prefix = directory.relative_to(root).as_posix() + "/"
        known = [i for i in manifest.part("images") if i.path.startswith(prefix)]
        if (
            known
            and (directory / bundle_images.MARKER).is_file()
            and all(bundle.is_present(root, i) for i in known)
        ):
            say(f"image {ref}: already here")
            continue
        partial = directory.with_name(directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        platform = bundle_images.skopeo_platform(plan.target.arch)
        _run(_skopeo(*platform, "copy", "-q", f"docker://{ref}", f"dir:{partial}"), say)
        digest = bundle.sha256_of(partial / "manifest.json")
        marker = {
            "ref": ref,
            "repository": bundle_images.repository(ref),
            "digest": f"sha256:{digest}",
            "registry_variable": image.registry_variable,
            "name": image.name,
        }
        (partial / bundle_images.MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        shutil.rmtree(directory, ignore_errors=True)
        partial.replace(directory)
        parsed = bundle_images.parse(ref)
        items = []
        for path in sorted(directory.iterdir()):
            if _BLOB.match(path.name):
                # skopeo checked each blob against its digest, the file's name: reuse it.
                rel = path.relative_to(root).as_posix()
                items.append(
                    Item(rel, "images", parsed.name, parsed.tag, path.stat().st_size, path.name)
                )
            else:
                items.append(bundle.item_for(root, path, "images", parsed.name, parsed.tag))
        manifest.items = [i for i in manifest.items if not i.path.startswith(prefix)] + items
        bundle.save(root, manifest)  # images are large: a killed build keeps each one copied
        say(f"image {ref}: {sum(i.size for i in items) / 2**20:.1f} MiB (sha256:{digest[:12]})")


def estimate_images(plan: bundle_plan.Plan, estimate: Estimate, say: Say) -> None:
    """Each image's config and layers from the registry's manifest (`skopeo inspect
    --raw`; a multi-platform list gives the target's entry); a note where the
    registry cannot be asked."""
    total = count = 0
    for image in plan.images:
        ref = image.ref
        try:
            manifest = json.loads(_inspect_raw(f"docker://{ref}", say))
            if "manifests" in manifest:
                digest = bundle_images.platform_manifest(manifest, plan.target.arch)
                if not digest:
                    estimate.notes.append(f"image {ref}: no linux/{plan.target.arch} image")
                    continue
                name = bundle_images.parse(ref).name
                manifest = json.loads(_inspect_raw(f"docker://{name}@{digest}", say))
        except BundleError as error:
            estimate.notes.append(f"image {ref}: not sized ({error})")
            continue
        size = bundle_images.manifest_size(manifest)
        say(f"image {ref}: {size / 2**20:.1f} MiB in {len(manifest.get('layers', []))} layers")
        total += size
        count += 1
    estimate.sizes["images"] = total
    estimate.counts["images"] = count


def _inspect_raw(source: str, say: Say) -> str:
    return _run(_skopeo("inspect", "--raw", source), say, capture_output=True).stdout


def _skopeo(*args: str) -> list[str]:
    """skopeo with the registries.conf that CONTAINERS_REGISTRIES_CONF names (a
    plain-HTTP or mirrored source registry): newer skopeo reads the variable,
    Debian 12's 1.9 only its --registries-conf option."""
    conf = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    return ["skopeo", *(["--registries-conf", conf] if conf else []), *args]


# --- the whole build --------------------------------------------------------------


def build(
    root: Path,
    plan: bundle_plan.Plan,
    endpoints: Endpoints,
    say: Say,
    parts: tuple[str, ...] = bundle.PARTS,
) -> tuple[Manifest, list[str]]:
    """Fill `root`; returns the manifest and notes on what is not in it."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        manifest = bundle.load(root)
    except BundleError:
        manifest = Manifest(plan.target)
    if manifest.target != plan.target:
        raise BundleError(
            f"{root} holds a bundle for {manifest.target.os}/{manifest.target.arch}, Python"
            f" {manifest.target.python}: build into another directory"
        )
    notes = list(plan.notes)
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("wheels", lambda: wheels(root, plan, manifest, say)),
        ("apt", lambda: apt(root, plan, manifest, say)),
        ("models", lambda: models(root, plan, manifest, endpoints, say)),
        ("images", lambda: images(root, plan, manifest, say)),
    ]
    for part, step in steps:
        if part in parts:
            missing = step()
            if missing:
                notes.append(
                    f"apt: not in {plan.target.os}'s archive, not bundled: {', '.join(missing)}"
                )
            bundle.save(root, manifest)  # after each part: a killed build keeps what it has
    return manifest, notes


def estimate(plan: bundle_plan.Plan, endpoints: Endpoints, say: Say) -> Estimate:
    result = Estimate(notes=list(plan.notes))
    estimate_wheels(plan, result, say)
    estimate_apt(plan, result, say)
    estimate_models(plan, endpoints, result, say)
    if plan.images:
        estimate_images(plan, result, say)
    return result


def endpoints_for(inventory_hosts: list[Any], hf: str = "", modelscope: str = "") -> Endpoints:
    """The hub endpoints the hosts use (models_hf_endpoint, models_modelscope_endpoint)."""
    values = inventory_hosts[0].vars if inventory_hosts else {}
    return Endpoints(
        huggingface=hf or paths.role_setting(values, "models", "models_hf_endpoint"),
        modelscope=modelscope or paths.role_setting(values, "models", "models_modelscope_endpoint"),
    )
