"""The hub repositories made from bundled models (real git) by the bundle_host role's
hub_repos.py, which `aiprov bundle serve` loads."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from aiprov import bundle_serve, paths

hub = bundle_serve.hub_helper()


def bundled_model(root, revision="main"):
    model = root / "models" / "tiny"
    model.mkdir(parents=True)
    files = {
        "config.json": b'{"a": 1}\n',
        "model.safetensors": b"\x01" * (hub.LFS_MIN_BYTES + 7),
    }
    records = []
    for name, content in files.items():
        (model / name).write_bytes(content)
        records.append(
            {"path": name, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        )
    marker = {
        "id": "tiny",
        "identity": {"hub": "huggingface", "repo": "org/tiny", "revision": revision},
        "commit": "a" * 40,
        "files": records,
    }
    (model / ".aiprov-model.json").write_text(json.dumps(marker))
    return model, records


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True).stdout


def test_small_files_as_blobs_large_as_hard_linked_lfs(tmp_path):
    model, records = bundled_model(tmp_path)
    assert hub.hub_repository(model, tmp_path / "hub") == ("org/tiny", True)
    repo = tmp_path / "hub" / "models" / "org" / "tiny"
    assert git(repo, "show", "main:config.json") == b'{"a": 1}\n'
    big = records[1]
    pointer = git(repo, "show", "main:model.safetensors").decode()
    oid = big["sha256"]
    assert (
        pointer
        == f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {big['size']}\n"
    )
    obj = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    assert obj.stat().st_ino == (model / "model.safetensors").stat().st_ino  # no second copy
    assert git(repo, "symbolic-ref", "HEAD").strip() == b"refs/heads/main"


def test_branch_is_the_catalog_revision_and_rerun_keeps_the_commit(tmp_path):
    model, _ = bundled_model(tmp_path, revision="master")
    hub.hub_repository(model, tmp_path / "hub")
    repo = tmp_path / "hub" / "models" / "org" / "tiny"
    first = git(repo, "rev-parse", "master")
    assert hub.hub_repository(model, tmp_path / "hub") == ("org/tiny", False)
    assert git(repo, "rev-parse", "master") == first


def test_the_script_reports_what_it_built(tmp_path):
    """As the role runs it: JSON naming every repository and the ones made now."""
    bundled_model(tmp_path / "bundle")
    argv = [sys.executable, str(paths.share_dir() / bundle_serve.HUB_HELPER)]
    argv += [str(tmp_path / "bundle"), str(tmp_path / "hub")]
    first = json.loads(subprocess.run(argv, capture_output=True, check=True).stdout)
    served = [{"repo": "org/tiny", "revision": "main"}]
    assert first == {"repos": served, "built": ["org/tiny"]}
    again = json.loads(subprocess.run(argv, capture_output=True, check=True).stdout)
    assert again == {"repos": served, "built": []}


def test_the_scripts_check_says_what_it_would_build_and_writes_nothing(tmp_path):
    bundled_model(tmp_path / "bundle")
    argv = [sys.executable, str(paths.share_dir() / bundle_serve.HUB_HELPER), "--check"]
    argv += [str(tmp_path / "bundle"), str(tmp_path / "hub")]
    found = json.loads(subprocess.run(argv, capture_output=True, check=True).stdout)
    assert found["built"] == ["org/tiny"]
    assert not (tmp_path / "hub").exists()


def test_the_script_fails_with_the_reason(tmp_path):
    model, _ = bundled_model(tmp_path / "bundle")
    (model / "config.json").unlink()
    argv = [sys.executable, str(paths.share_dir() / bundle_serve.HUB_HELPER)]
    done = subprocess.run(
        [*argv, str(tmp_path / "bundle"), str(tmp_path / "hub")], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "config.json" in done.stderr
