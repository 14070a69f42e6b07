"""The models role's fetch helper (roles/models/files/model_fetch.py) and `aiprov models pull`.

The helper's hub paths run for real in molecule/models (Hugging Face through
an Olah mirror). No ModelScope-compatible server exists here, so the
ModelScope path is checked through the command it builds and a fake client.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiprov import paths, runner
from aiprov.cli import main

_HELPER = paths.roles_dir() / "models" / "files" / "model_fetch.py"
_spec = importlib.util.spec_from_file_location("model_fetch", _HELPER)
mf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mf)


def spec(tmp_path: Path, **over) -> dict:
    base = {
        "id": "qwen3-32b",
        "hub": "modelscope",
        "repo": "Qwen/Qwen3-32B",
        "revision": "master",
        "allow_patterns": ["*.json", "*.safetensors"],
        "ignore_patterns": ["original/"],
        "local_dir": str(tmp_path / "models" / "qwen3-32b"),
        "endpoint": "https://www.modelscope.cn",
        "source": "hub",
        "tools_bin": "/opt/aiprov/models-tools/bin",
        "reserve_bytes": 0,
        "bwlimit_kib": 0,
        "check": False,
    }
    return base | over


def test_patterns_follow_huggingface_hub_rules():
    assert mf.selected("config.json", ["*.json"], [])
    assert not mf.selected("README.md", ["*.json"], [])
    assert not mf.selected("original/consolidated.pth", [], ["original/"])
    assert mf.selected("original/params.json", [], [])
    assert mf.selected("a/b.safetensors", ["*.safetensors"], [])


def test_modelscope_command_is_the_official_client_without_token(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms-secret-token")
    s = spec(tmp_path)
    argv = mf.ms_command(s)
    assert argv == [
        "/opt/aiprov/models-tools/bin/modelscope",
        "download",
        "Qwen/Qwen3-32B",
        "--revision",
        "master",
        "--local-dir",
        s["local_dir"],
        "--include",
        "*.json",
        "*.safetensors",
        "--exclude",
        "original/",
    ]
    assert not any("secret" in arg for arg in argv)
    env = mf.ms_environment(s)
    assert env["MODELSCOPE_ENDPOINT"] == "https://www.modelscope.cn"
    assert env["MODELSCOPE_API_TOKEN"] == "ms-secret-token"
    assert env["MODELSCOPE_DOWNLOAD_INTRA_CLOUD"] == "false"


def test_modelscope_command_parses_with_the_real_client(tmp_path):
    cli = pytest.importorskip("modelscope_hub.cli.main")
    args = cli._build_parser().parse_args(mf.ms_command(spec(tmp_path))[1:])
    assert args.repo_id == "Qwen/Qwen3-32B"
    assert args.local_dir.endswith("qwen3-32b")
    assert args.allow_patterns == ["*.json", "*.safetensors"]


def test_token_goes_from_stdin_to_the_environment_only(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "restored after the test")
    s = spec(tmp_path, hub="huggingface", token="hf_from_vault")
    mf.take_token(s)
    assert "token" not in s
    env = mf.hf_environment(s)
    assert env["HF_TOKEN"] == "hf_from_vault"
    argv = mf.hf_command(s, "abc123", ["config.json"])
    assert not any("hf_from_vault" in arg for arg in argv)


def test_hf_command_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    s = spec(tmp_path, hub="huggingface", endpoint="https://hf-mirror.com")
    argv = mf.hf_command(s, "abc123", ["config.json", "tokenizer.json"])
    assert argv[:3] == ["/opt/aiprov/models-tools/bin/hf", "download", "Qwen/Qwen3-32B"]
    assert argv[3:5] == ["config.json", "tokenizer.json"]
    assert argv[5:] == ["--revision", "abc123", "--local-dir", s["local_dir"]]
    env = mf.hf_environment(s)
    assert env["HF_ENDPOINT"] == "https://hf-mirror.com"
    assert env["HF_HUB_DISABLE_UPDATE_CHECK"] == "1"
    assert not any("hf_secret" in arg for arg in argv)


def test_hub_timeout_reaches_the_real_hf_library(tmp_path, monkeypatch):
    for name in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        monkeypatch.setenv(name, "1")  # restored after the test
    s = spec(tmp_path, hub="huggingface", hub_timeout=75)
    mf.set_hub_timeouts(s)
    read = (
        "import huggingface_hub.constants as c;"
        "print(c.HF_HUB_ETAG_TIMEOUT, c.HF_HUB_DOWNLOAD_TIMEOUT)"
    )
    result = subprocess.run(
        [sys.executable, "-c", read],
        env=mf.hf_environment(s),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == ["75", "75"]


def test_rsync_command_resumes_in_place(tmp_path):
    s = spec(tmp_path, source="rsync://10.0.0.5:8730/qwen3-32b/", bwlimit_kib=5000)
    argv = mf.rsync_command(s)
    assert {"--inplace", "--append-verify", "--files-from=-", "--bwlimit=5000"} <= set(argv)
    assert argv[-2:] == ["rsync://10.0.0.5:8730/qwen3-32b/", s["local_dir"] + "/"]


def test_disk_check_names_needed_free_and_path(tmp_path):
    s = spec(tmp_path, reserve_bytes=1 << 60)
    with pytest.raises(mf.FetchError) as error:
        mf.check_disk(s, [{"path": "model.safetensors", "size": 5 << 30}])
    message = str(error.value)
    assert "needs 5.0 GiB" in message
    assert "free on the filesystem of" in message
    assert str(tmp_path) in message


def test_disk_check_counts_partial_files(tmp_path):
    s = spec(tmp_path)
    partial = Path(s["local_dir"]) / mf.PARTIAL_DIR / "model.safetensors.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x" * 600)
    assert mf.check_disk(s, [{"path": "model.safetensors", "size": 1000}]) == 400


def _fake_modelscope(files: dict[str, bytes], calls: list):
    """Metadata and a client that writes the files, as `modelscope download` would."""

    def metadata(s):
        listing = [
            {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
            for p, d in files.items()
        ]
        return "master", listing

    def run(argv, env, stdin=None):
        calls.append(argv)
        local = Path(argv[argv.index("--local-dir") + 1])
        for path, data in files.items():
            (local / path).parent.mkdir(parents=True, exist_ok=True)
            (local / path).write_bytes(data)
        return ""

    return metadata, run


def test_fetch_verifies_records_and_skips_complete_models(tmp_path, monkeypatch):
    files = {"config.json": b"{}", "model.safetensors": b"\x00" * 4096}
    calls: list = []
    metadata, run = _fake_modelscope(files, calls)
    monkeypatch.setattr(mf, "ms_metadata", metadata)
    monkeypatch.setattr(mf, "_run", run)
    s = spec(tmp_path)

    first = mf.fetch(s)
    assert first["changed"] and first["files"] == 2 and len(calls) == 1
    marker = json.loads((Path(s["local_dir"]) / mf.MARKER).read_text())
    assert marker["commit"] == "master"
    assert marker["identity"]["repo"] == "Qwen/Qwen3-32B"
    assert {f["path"] for f in marker["files"]} == set(files)

    # Complete: no metadata call, no client run.
    monkeypatch.setattr(mf, "ms_metadata", lambda s: pytest.fail("network touched"))
    assert mf.fetch(s) == {"changed": False, "id": "qwen3-32b", "commit": "master"}
    assert len(calls) == 1

    # Another revision asked for: the marker no longer counts.
    assert mf.fetch(spec(tmp_path, revision="v2", check=True))["changed"]


def test_fetch_removes_corrupt_files(tmp_path, monkeypatch):
    calls: list = []
    metadata, _ = _fake_modelscope({"model.safetensors": b"good" * 100}, calls)
    _, run = _fake_modelscope({"model.safetensors": b"evil" * 100}, calls)
    monkeypatch.setattr(mf, "ms_metadata", metadata)
    monkeypatch.setattr(mf, "_run", run)
    s = spec(tmp_path)
    with pytest.raises(mf.FetchError, match="sha256"):
        mf.fetch(s)
    assert not (Path(s["local_dir"]) / "model.safetensors").exists()
    assert not (Path(s["local_dir"]) / mf.MARKER).exists()


def test_check_mode_touches_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(mf, "ms_metadata", lambda s: pytest.fail("network touched"))
    s = spec(tmp_path, check="True")
    assert mf.fetch(s) == {"changed": True, "id": "qwen3-32b"}
    assert not Path(s["local_dir"]).exists()


def test_models_pull_runs_the_models_playbook(tmp_path, monkeypatch):
    seen = {}

    def fake_run(options, on_event, cancelled):
        seen["options"] = options
        return runner.RunResult(0, runner.RunState(), tmp_path, "successful")

    monkeypatch.setattr(runner, "run", fake_run)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all: {}\n")
    result = CliRunner().invoke(main, ["models", "pull", "-i", str(inventory), "--limit", "gpu02"])
    assert result.exit_code == 0, result.output
    assert seen["options"].playbook == "models"
    assert seen["options"].limit == "gpu02"
    assert paths.playbook("models").is_file()


def test_validate_reports_catalog_problems(tmp_path):
    from aiprov import inventory, validate

    hosts = tmp_path / "hosts.yml"
    hosts.write_text(
        """\
all:
  hosts:
    gpu01: {}
    gpu02: {models_enabled: [nope]}
  vars:
    models_cache_host: cache99
    models_catalog:
      - {id: a, hub: huggingface, repo: x/a}
      - {id: a, hub: huggingface, repo: x/b, local_dir: rel/dir}
      - {id: c, hub: modelscope, repo: x/c, local_dir: /data/models/a}
"""
    )
    found = [str(p) for p in validate.validate(inventory.load(hosts))]
    expected = [
        "models_enabled[0]: 'nope' is not a models_catalog id (ids: a, c)",
        "models_cache_host: 'cache99' is not a host of this inventory",
        "models_catalog[1].id: 'a' appears twice in the catalog",
        "models_catalog[1].local_dir: 'rel/dir' is not an absolute path",
        "models_catalog[2].local_dir: '/data/models/a' is also the directory of 'a'",
    ]
    for message in expected:
        assert sum(message in line for line in found) == 1, (message, found)


def test_example_inventory_catalog_is_clean():
    from aiprov import inventory, validate

    source = paths.profiles_dir() / "l20-8x"
    found = validate.validate(inventory.load(source))
    assert not [p for p in found if p.key.startswith("models_")]


# --- Fleet cache, streaming ------------------------------------------------------

LISTING = """\
drwxr-xr-x          4,096 2026/11/21 09:25:26 .
-rw-r--r--            684 2026/11/21 09:25:26 config.json
-rw-r--r--     52,428,800 2026/11/21 09:25:30 model-00001-of-00002.safetensors
-rw-r--r--             35 2026/11/21 09:25:31 .aiprov-plan.json
drwxr-xr-x          4,096 2026/11/21 09:25:26 sub dir
-rw-r--r--             12 2026/11/21 09:25:26 sub dir/a file.txt
lrwxrwxrwx             11 2026/11/21 09:25:26 link -> config.json
"""


def test_listing_gives_regular_files_and_sizes():
    assert mf.parse_listing(LISTING) == {
        "config.json": 684,
        "model-00001-of-00002.safetensors": 52_428_800,
        ".aiprov-plan.json": 35,
        "sub dir/a file.txt": 12,
    }


def test_a_pass_copies_only_planned_files_complete_there_and_not_here(tmp_path):
    planned = [
        {"path": "config.json", "size": 684},
        {"path": "model-00001-of-00002.safetensors", "size": 52_428_800},
        {"path": "model-00002-of-00002.safetensors", "size": 52_428_800},  # not there yet
        {"path": "tokenizer.json", "size": 100},  # there, but short: still being written
    ]
    listing = mf.parse_listing(LISTING) | {"tokenizer.json": 40, "stale.bin": 9}
    local = tmp_path / "model"
    local.mkdir()
    (local / "config.json").write_bytes(b"x" * 684)  # complete here already
    ready = mf.streamable(listing, planned, local)
    assert [entry["path"] for entry in ready] == ["model-00001-of-00002.safetensors"]
    # A copy cut short here is copied again (rsync continues it).
    (local / "model-00001-of-00002.safetensors").write_bytes(b"x" * 10)
    assert len(mf.streamable(listing, planned, local)) == 1


class FakeCacheHost:
    """The cache host seen through its rsync daemon: each listing advances its download
    by one step (the plan, one shard after the other, then the marker)."""

    def __init__(self, s: dict, shards: dict[str, bytes]):
        self.identity = mf.identity(s)
        self.shards = shards
        self.files = [
            {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
            for p, d in shards.items()
        ]
        self.step = 0
        self.copied: list[list[str]] = []

    def listing(self, s):
        self.step += 1
        done = list(self.shards)[: self.step - 1]
        lines = [f"-rw-r--r-- 10 2026/11/21 09:00:00 {mf.PLAN}"]
        lines += [f"-rw-r--r-- {len(self.shards[p])} 2026/11/21 09:00:01 {p}" for p in done]
        if self.step > len(self.shards) + 1:  # one look after the last shard
            lines.append(f"-rw-r--r-- 10 2026/11/21 09:00:09 {mf.MARKER}")
        return "\n".join(lines) + "\n", ""

    def file(self, s, name):
        content = {"identity": self.identity, "commit": "abc", "files": self.files}
        return content, ""

    def copy(self, s, paths):
        self.copied.append(paths)
        Path(s["local_dir"]).mkdir(parents=True, exist_ok=True)
        for path in paths:
            (Path(s["local_dir"]) / path).write_bytes(self.shards[path])
        return sum(len(self.shards[p]) for p in paths)


def test_follower_copies_each_shard_as_it_completes_then_stops_at_the_marker(tmp_path, monkeypatch):
    s = spec(tmp_path, hub="huggingface", source="rsync://10.0.0.5:8730/qwen3-32b/")
    shards = {f"model-0000{i}-of-00003.safetensors": bytes([i]) * 1000 for i in (1, 2, 3)}
    host = FakeCacheHost(s, shards)
    monkeypatch.setattr(mf, "cache_listing", host.listing)
    monkeypatch.setattr(mf, "cache_file", host.file)
    monkeypatch.setattr(mf, "copy_from_cache", host.copy)
    hashed = []
    monkeypatch.setattr(mf, "sha256_of", lambda p: hashed.append(p.name) or "h-" + p.name)
    digests: dict = {}
    streamed = mf.follow_cache(s, digests, sleep=lambda _: None)
    assert host.copied == [[name] for name in shards]  # one pass per shard, before the marker
    assert streamed == 3000
    assert hashed == list(shards)  # hashed as they arrived
    # verify() reuses those digests while the files are unchanged...
    local = Path(s["local_dir"])
    entries = [{"path": p, "size": 1000} for p in shards]
    assert [e["sha256"] for e in mf.verify(s, entries, digests)] == ["h-" + p for p in shards]
    assert len(hashed) == 3
    # ...and hashes a file again once it was written since.
    (local / "model-00001-of-00003.safetensors").write_bytes(b"\x09" * 1000)
    mf.verify(s, entries, digests)
    assert hashed[3:] == ["model-00001-of-00003.safetensors"]


def test_follower_fails_clearly_when_the_cache_host_makes_no_progress(tmp_path, monkeypatch):
    s = spec(tmp_path, hub="huggingface", source="rsync://10.0.0.5:8730/qwen3-32b/")
    s["follow_timeout"] = "30"
    reason = "@ERROR: chdir failed"
    monkeypatch.setattr(mf, "cache_listing", lambda s: ("", reason))
    now = iter(range(0, 1000, 5))
    with pytest.raises(mf.FetchError) as error:
        mf.follow_cache(s, {}, clock=lambda: next(now), sleep=lambda _: None)
    message = str(error.value)
    assert "made no progress on qwen3-32b for 30 s" in message
    assert reason in message and "models_cache_host" in message


def test_follower_needs_a_complete_cache_when_its_host_is_not_in_the_run(tmp_path, monkeypatch):
    s = spec(tmp_path, source="rsync://10.0.0.5:8730/qwen3-32b/", follow=False)
    monkeypatch.setattr(mf, "cache_file", lambda s, name: (None, "link_stat failed"))
    monkeypatch.setattr(mf, "follow_cache", lambda *a: pytest.fail("followed"))
    with pytest.raises(mf.FetchError, match="has no complete copy of qwen3-32b yet"):
        mf.fetch(s)


def test_progress_counts_every_byte_under_the_model(tmp_path):
    (tmp_path / mf.PARTIAL_DIR).mkdir()
    (tmp_path / mf.PARTIAL_DIR / "model.safetensors.part").write_bytes(b"x" * 700)
    (tmp_path / "config.json").write_bytes(b"x" * 30)
    (tmp_path / mf.PROGRESS).write_text('{"bytes_on_disk": 1}')
    assert mf.bytes_on_disk(tmp_path) == 730


def test_a_client_alongside_the_download_reports_its_failure():
    client = mf.Background(["sh", "-c", "echo hub said no >&2; exit 3"], {"PATH": "/usr/bin:/bin"})
    with pytest.raises(mf.FetchError, match="sh -c exited 3: hub said no"):
        client.wait()


def test_hub_download_plans_then_places_each_verified_file(tmp_path, monkeypatch):
    weights = {
        "model-00001-of-00002.safetensors": b"a" * 3000,
        "model-00002-of-00002.safetensors": b"b" * 2000,
    }
    small = {"config.json": b"{}"}
    listing = [
        {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        for p, d in weights.items()
    ] + [{"path": p, "size": len(d), "sha256": None} for p, d in small.items()]
    s = spec(tmp_path, hub="huggingface", id="sharded")
    local = Path(s["local_dir"])
    monkeypatch.setattr(mf, "hf_metadata", lambda s: ("c0ffee", listing))
    plans = []

    def download(s, commit, entry):
        plans.append(json.loads((local / mf.PLAN).read_text()))
        mf.partial_path(s, entry).parent.mkdir(parents=True, exist_ok=True)
        mf.partial_path(s, entry).write_bytes(weights[entry["path"]])
        return entry["size"]

    class SmallFiles:
        def __init__(self, argv, env):
            for path in argv[3 : argv.index("--revision")]:
                (local / path).write_bytes(small[path])

        def wait(self):
            pass

        def stop(self):
            pass

    monkeypatch.setattr(mf, "hf_fetch_resumable", download)
    monkeypatch.setattr(mf, "Background", SmallFiles)
    result = mf.fetch(s)
    assert result["changed"] and result["files"] == 3 and result["commit"] == "c0ffee"
    # Followers knew the whole plan before the first byte.
    assert plans[0]["commit"] == "c0ffee" and len(plans[0]["files"]) == 3
    assert all((local / p).read_bytes() == d for p, d in (weights | small).items())
    assert not (local / mf.PLAN).exists() and not (local / mf.PARTIAL_DIR).exists()

    # A file that does not match the hub's sha256 never reaches its final path.
    weights["model-00002-of-00002.safetensors"] = b"x" * 2000
    s2 = spec(tmp_path, hub="huggingface", id="sharded", local_dir=str(tmp_path / "other"))
    local = Path(s2["local_dir"])
    with pytest.raises(mf.FetchError, match=r"model-00002-of-00002\.safetensors: sha256 differs"):
        mf.fetch(s2)
    assert (local / "model-00001-of-00002.safetensors").exists()
    assert not (local / "model-00002-of-00002.safetensors").exists()
    assert not mf.partial_path(s2, listing[1]).exists()
