"""The bundle manifest and `aiprov bundle verify`: missing, tampered, other release."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aiprov import bundle
from aiprov.cli import main

TARGET = bundle.Target(os="debian12", python="3.11", arch="x86_64")
ITEM = {"path": "x", "part": "apt", "name": "", "version": "", "size": 1, "sha256": ""}


def make_bundle(root):
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "wheels/six-1.17.0-py2.py3-none-any.whl": ("wheels", "six", "1.17.0", b"wheel bytes"),
        "apt/debian12/curl_7.88_amd64.deb": ("apt", "curl", "7.88", b"deb bytes"),
        "models/tiny/config.json": ("models", "tiny", "abc123", b'{"a": 1}'),
    }
    manifest = bundle.Manifest(TARGET)
    for rel, (part, name, version, content) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        manifest.add([bundle.item_for(root, path, part, name, version)])
    bundle.save(root, manifest)
    return manifest


def test_round_trip_and_clean_verify(tmp_path):
    manifest = make_bundle(tmp_path)
    loaded = bundle.load(tmp_path)
    assert loaded.target == TARGET
    assert sorted(i.path for i in loaded.items) == sorted(i.path for i in manifest.items)
    assert loaded.size() == len(b"wheel bytes") + len(b"deb bytes") + len(b'{"a": 1}')
    assert loaded.size("apt") == len(b"deb bytes")
    assert list(bundle.verify(tmp_path, loaded)) == []


def test_missing_file(tmp_path):
    make_bundle(tmp_path)
    (tmp_path / "apt/debian12/curl_7.88_amd64.deb").unlink()
    problems = list(bundle.verify(tmp_path, bundle.load(tmp_path)))
    assert [(p.key, p.message) for p in problems] == [("apt curl 7.88", "missing from the bundle")]
    assert problems[0].file.endswith("apt/debian12/curl_7.88_amd64.deb")


def test_tampered_same_size(tmp_path):
    make_bundle(tmp_path)
    (tmp_path / "wheels/six-1.17.0-py2.py3-none-any.whl").write_bytes(b"WHEEL bytes")
    (problem,) = bundle.verify(tmp_path, bundle.load(tmp_path))
    assert problem.key == "wheels six 1.17.0"
    assert "sha256" in problem.message and "the manifest says" in problem.message


def test_truncated(tmp_path):
    make_bundle(tmp_path)
    (tmp_path / "models/tiny/config.json").write_bytes(b"{}")
    (problem,) = bundle.verify(tmp_path, bundle.load(tmp_path))
    assert problem.message == "2 bytes, the manifest says 8"


def test_other_release_and_arch(tmp_path):
    manifest = make_bundle(tmp_path)
    hosts = [
        ("inv/hosts.yml", "a", "debian12", "x86_64"),
        ("inv/hosts.yml", "b", "debian13", ""),
        ("inv/host_vars/c.yml", "c", "", "aarch64"),
        ("inv/hosts.yml", "d", "", ""),
    ]
    problems = list(bundle.check_targets(tmp_path, manifest, hosts))
    assert [(p.file, p.key) for p in problems] == [
        ("inv/hosts.yml", "b: aiprov_os"),
        ("inv/host_vars/c.yml", "c: aiprov_arch"),
    ]
    assert "runs debian13" in problems[0].message and "built for debian12" in problems[0].message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"format": 0}, "format"),
        ({"format": 1, "target": {"os": "debian12"}, "items": []}, "malformed"),
        (
            {
                "format": 1,
                "target": {"os": "d", "python": "3", "arch": "x"},
                "items": [ITEM | {"path": "../etc/passwd"}],
            },
            "leaves the bundle",
        ),
        (
            {
                "format": 1,
                "target": {"os": "d", "python": "3", "arch": "x"},
                "items": [ITEM | {"part": "debs"}],
            },
            "unknown part",
        ),
    ],
)
def test_bad_manifest(data, message):
    with pytest.raises(bundle.BundleError, match=message):
        bundle.parse(data)


def test_add_replaces_by_path(tmp_path):
    manifest = make_bundle(tmp_path)
    path = tmp_path / "models/tiny/config.json"
    path.write_bytes(b"{}")
    manifest.add([bundle.item_for(tmp_path, path, "models", "tiny", "def456")])
    assert [i.version for i in manifest.part("models")] == ["def456"]
    assert len(manifest.items) == 3


def write_inventory(tmp_path, os_name):
    inv = tmp_path / "inv"
    inv.mkdir()
    hosts = {"all": {"hosts": {"h1": {"aiprov_os": os_name, "ansible_connection": "local"}}}}
    (inv / "hosts.yml").write_text(json.dumps(hosts))
    return inv


def test_cli_verify_clean(tmp_path):
    make_bundle(tmp_path / "b")
    result = CliRunner().invoke(main, ["bundle", "verify", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "3 files" in result.output


def test_cli_verify_tampered_exit_4(tmp_path):
    make_bundle(tmp_path / "b")
    (tmp_path / "b/wheels/six-1.17.0-py2.py3-none-any.whl").write_bytes(b"x")
    result = CliRunner().invoke(main, ["bundle", "verify", str(tmp_path / "b")])
    assert result.exit_code == 4
    assert "six-1.17.0-py2.py3-none-any.whl: wheels six 1.17.0: 1 bytes" in result.output


def test_cli_verify_other_release_exit_4(tmp_path):
    make_bundle(tmp_path / "b")
    inv = write_inventory(tmp_path, "debian13")
    result = CliRunner().invoke(main, ["bundle", "verify", str(tmp_path / "b"), "-i", str(inv)])
    assert result.exit_code == 4
    assert "h1: aiprov_os: the host runs debian13" in result.output


def test_cli_verify_not_a_bundle(tmp_path):
    result = CliRunner().invoke(main, ["bundle", "verify", str(tmp_path)])
    assert result.exit_code == 4
    assert "no manifest" in result.output
