"""Image names in a bundle and the overlay that points hosts at the bundle's registry
(aiprov.bundle_images: pure)."""

from __future__ import annotations

import pytest

from aiprov import bundle_build, bundle_images, bundle_plan, bundle_serve
from aiprov.bundle_images import Image, Reference
from test_bundle_plan import inventory


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("redis", Reference("docker.io", "library/redis", "latest")),
        ("redis:7-alpine", Reference("docker.io", "library/redis", "7-alpine")),
        ("langgenius/dify-api:1.13.3", Reference("docker.io", "langgenius/dify-api", "1.13.3")),
        ("docker.io/library/nginx:1", Reference("docker.io", "library/nginx", "1")),
        ("index.docker.io/org/x:2", Reference("docker.io", "org/x", "2")),
        ("ghcr.io/org/tool:v1", Reference("ghcr.io", "org/tool", "v1")),
        ("localhost/x:1", Reference("localhost", "x", "1")),
        ("reg.example:5000/a/b/c", Reference("reg.example:5000", "a/b/c", "latest")),
        ("Quay.IO/org/x:1", Reference("quay.io", "org/x", "1")),
    ],
)
def test_references_normalized_as_docker_does(ref, expected):
    assert bundle_images.parse(ref) == expected


@pytest.mark.parametrize("ref", ["redis@sha256:" + "a" * 64, "Org/X:1", "reg.example/:1"])
def test_bad_references_refused(ref):
    with pytest.raises(bundle_images.ImageNameError):
        bundle_images.parse(ref)


@pytest.mark.parametrize(
    ("ref", "repository", "directory"),
    [
        # Docker Hub's repository as is: what dockerd asks a registry mirror for
        ("redis:7", "library/redis", "docker.io/library/redis:7"),
        ("langgenius/dify-web:1", "langgenius/dify-web", "docker.io/langgenius/dify-web:1"),
        ("ghcr.io/org/tool:v1", "ghcr.io/org/tool", "ghcr.io/org/tool:v1"),
        # a repository name has no colon
        ("reg.example:5000/ai/m:2", "reg.example-5000/ai/m", "reg.example:5000/ai/m:2"),
    ],
)
def test_where_the_bundle_keeps_an_image(ref, repository, directory):
    assert bundle_images.repository(ref) == repository
    assert bundle_images.directory(ref) == directory


def test_hub_images_through_the_daemons_mirror():
    variables, notes = bundle_images.overlay([Image("redis:7"), Image("org/x:1")], "10.0.0.5:8783")
    assert variables == {"docker_registry_mirrors": ["http://10.0.0.5:8783"]}
    assert notes == []


def test_an_image_of_another_registry_through_its_role_variable():
    image = Image("reg.example:5000/ai/mineru-vllm:2.5.4", "mineru_image_registry", "mineru-vllm")
    variables, notes = bundle_images.overlay([image], "10.0.0.5:8783")
    # the mineru role pulls {registry}/{name}:{tag}: the bundle registry's copy
    assert variables["mineru_image_registry"] == "10.0.0.5:8783/reg.example-5000/ai"
    assert (
        f"{variables['mineru_image_registry']}/mineru-vllm:2.5.4"
        == "10.0.0.5:8783/" + bundle_images.repository(image.ref) + ":2.5.4"
    )
    # plain HTTP: an insecure registry of the daemon; no Hub image, no mirror
    assert variables["docker_insecure_registries"] == ["10.0.0.5:8783"]
    assert "docker_registry_mirrors" not in variables
    assert notes == []


def test_an_image_no_role_names_is_reported():
    variables, notes = bundle_images.overlay(
        [Image("redis:7"), Image("quay.io/org/etcd:3")], "10.0.0.5:8783"
    )
    assert variables["docker_registry_mirrors"] == ["http://10.0.0.5:8783"]
    assert "quay.io/org/etcd:3" in notes[0]
    assert "10.0.0.5:8783/quay.io/org/etcd:3" in notes[0]


def test_a_name_with_a_namespace_keeps_its_registry_prefix():
    image = Image("reg.example/ns/mineru:1", "mineru_image_registry", "ns/mineru")
    variables, _ = bundle_images.overlay([image], "h:1")
    assert variables["mineru_image_registry"] == "h:1/reg.example"


def test_platform_entry_of_a_list_and_sizes():
    index = {
        "manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    }
    assert bundle_images.platform_manifest(index, "x86_64") == "sha256:amd"
    assert bundle_images.platform_manifest(index, "aarch64") == "sha256:arm"
    assert bundle_images.platform_manifest(index, "ppc64le") == ""
    manifest = {"config": {"size": 500}, "layers": [{"size": 1000}, {"size": 24}]}
    assert bundle_images.manifest_size(manifest) == 1524
    assert bundle_images.skopeo_platform("aarch64")[-1] == "arm64"


def test_plan_names_minerus_image_with_its_role_variable():
    host = {"aiprov_gpu_family": "l20", "mineru_services": [{"name": "api"}]}
    host |= {"mineru_image_registry": "reg.example/od/", "mineru_version": "2.5.4"}
    (image,) = bundle_plan.plan(inventory(host)).images
    assert image == Image(
        "reg.example/od/mineru-vllm:2.5.4", "mineru_image_registry", "mineru-vllm"
    )


def test_a_local_mineru_image_is_not_bundled_and_said_so():
    host = {"aiprov_gpu_family": "l20", "mineru_services": [{"name": "api"}]}
    plan = bundle_plan.plan(inventory(host))
    assert plan.images == []
    assert any("mineru_image_registry is empty" in note for note in plan.notes)


def test_estimate_says_why_an_image_is_not_sized(monkeypatch):
    def unreachable(argv, say, **kwargs):
        raise bundle_build.BundleError("skopeo exited 1: pinging container registry")

    monkeypatch.setattr(bundle_build, "_run", unreachable)
    host = {"aiprov_gpu_family": "l20", "mineru_services": [{"name": "api"}]}
    host |= {"mineru_image_registry": "reg.example/od"}
    plan = bundle_plan.plan(inventory(host))
    estimate = bundle_build.Estimate()
    bundle_build.estimate_images(plan, estimate, lambda line: None)
    assert estimate.sizes["images"] == 0
    assert estimate.notes == [
        "image reg.example/od/mineru-vllm:2.5.4: not sized"
        " (skopeo exited 1: pinging container registry)"
    ]


def test_the_role_script_reads_the_marker_bundle_build_writes():
    """registry_images.py (run on bundle hosts with their python3, without
    aiprov) names the image marker as aiprov.bundle_images does."""
    assert bundle_serve.registry_helper().MARKER == bundle_images.MARKER
