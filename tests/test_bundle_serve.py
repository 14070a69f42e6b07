"""The hub repositories `aiprov bundle serve` makes from bundled models (real git)."""

from __future__ import annotations

import hashlib
import json
import subprocess

from aiprov import bundle_serve


def bundled_model(root, revision="main"):
    model = root / "models" / "tiny"
    model.mkdir(parents=True)
    files = {
        "config.json": b'{"a": 1}\n',
        "model.safetensors": b"\x01" * (bundle_serve.LFS_MIN_BYTES + 7),
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
    name = bundle_serve.hub_repository(tmp_path, model, tmp_path / "hub")
    assert name == "org/tiny"
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
    bundle_serve.hub_repository(tmp_path, model, tmp_path / "hub")
    repo = tmp_path / "hub" / "models" / "org" / "tiny"
    first = git(repo, "rev-parse", "master")
    bundle_serve.hub_repository(tmp_path, model, tmp_path / "hub")
    assert git(repo, "rev-parse", "master") == first
