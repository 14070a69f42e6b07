"""The images part of a bundle with real servers: a docker-registry as the source,
`bundle_build.images` copying from it with skopeo, `bundle_serve.serve` loading the
bundle into its own docker-registry, and the images pulled back from there by
skopeo and, on a sandbox host, by a real dockerd that the docker role configured
with the overlay."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from aiprov import bundle, bundle_build, bundle_plan, bundle_serve
from aiprov.bundle_images import Image
from test_bundle_plan import inventory

TOOLS = ("docker-registry", "skopeo", "podman")
CONTENT = b"an image carried to hosts that reach nothing\n"
# The same image under a Docker Hub name (through registry-mirrors) and under
# another registry's (through mineru_image_registry).
HUB_REF = "aiprov-tiny:1"
REPO = Path(__file__).resolve().parent.parent
DOCKER_HOST_IMAGE = "localhost/aiprov-debian13:latest"  # Debian 13: docker.io 26


@pytest.fixture(scope="module", autouse=True)
def _tools():
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        message = f"{', '.join(missing)} missing (run scripts/setup.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def free_ports(count: int) -> int:
    """A first port with `count` free ports from it (the serve offsets)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65000:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return first
    raise RuntimeError("no free ports")


def wait_for(url: str) -> None:
    for _ in range(100):
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


@pytest.fixture
def upstream(tmp_path, monkeypatch):
    """A real registry holding a tiny image pushed by podman as Docker format
    (v2s2, as Docker Hub serves), as library/aiprov-tiny:1 and aiprov/tiny:1;
    registries.conf makes it docker.io's mirror and says it is plain HTTP, as a
    user's would. Yields its address and the image's digest."""
    port = free_ports(1)
    source = f"127.0.0.1:{port}"
    config = tmp_path / "upstream.yml"
    store = tmp_path / "upstream-store"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(store)}},
                "http": {"addr": source},
            }
        )
    )
    log = (tmp_path / "upstream.log").open("w")
    server = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    image = f"localhost/aiprov-bundle-test-{uuid.uuid4().hex[:8]}:1"
    try:
        wait_for(f"http://{source}/v2/")
        context = tmp_path / "context"
        context.mkdir()
        (context / "hello.txt").write_bytes(CONTENT)
        (context / "Containerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
        run("podman", "build", "-q", "-t", image, str(context))
        for name in ("library/aiprov-tiny:1", "aiprov/tiny:1"):
            destination = f"docker://{source}/{name}"
            run(
                "podman", "push", "-q", "--format", "v2s2", "--tls-verify=false", image, destination
            )
        digest = bundle_serve.registry_helper().held_digest(f"http://{source}", "aiprov/tiny", "1")
        assert digest.startswith("sha256:")
        registries = tmp_path / "registries.conf"
        registries.write_text(
            f'[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
            f'[[registry.mirror]]\nlocation = "{source}"\ninsecure = true\n'
            f'[[registry]]\nlocation = "{source}"\ninsecure = true\n'
        )
        monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(registries))
        yield source, digest
    finally:
        subprocess.run(["podman", "rmi", "-f", image], capture_output=True, check=False)
        server.terminate()
        server.wait(10)


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{argv[:3]}: {done.stderr}"
    return done.stdout


def image_plan(source: str) -> bundle_plan.Plan:
    """A host running MinerU from the source registry, plus a Docker Hub image."""
    host = {"aiprov_gpu_family": "l20", "mineru_services": [{"name": "api"}]}
    host |= {"mineru_image_registry": f"{source}/aiprov", "mineru_image_name": "tiny"}
    host |= {"mineru_image_tag": "1"}
    plan = bundle_plan.plan(inventory(host))
    assert plan.images == [Image(f"{source}/aiprov/tiny:1", "mineru_image_registry", "tiny")]
    plan.images.append(Image(HUB_REF))
    return plan


def test_images_copied_served_and_pulled_back(upstream, tmp_path):
    source, digest = upstream
    plan = image_plan(source)
    root = tmp_path / "bundle"
    root.mkdir()
    manifest = bundle.Manifest(plan.target)
    said: list[str] = []

    # --dry-run: the registry's manifests size what the build then copies
    estimate = bundle_build.Estimate()
    bundle_build.estimate_images(plan, estimate, said.append)
    assert estimate.notes == []

    # build: the registry's manifest and blobs, each file in the manifest with its sha256
    bundle_build.images(root, plan, manifest, said.append)
    image_dir = root / "images" / f"{source}/aiprov/tiny:1"
    hub_dir = root / "images" / "docker.io/library/aiprov-tiny:1"
    blobs = [p for d in (image_dir, hub_dir) for p in d.iterdir() if len(p.name) == 64]
    assert estimate.sizes["images"] == sum(p.stat().st_size for p in blobs) > 0
    for directory in (image_dir, hub_dir):
        assert bundle.sha256_of(directory / "manifest.json") == digest.removeprefix("sha256:")
    names = {i.path.rsplit("/", 1)[-1] for i in manifest.items}
    assert {"manifest.json", bundle_serve.bundle_images.MARKER} <= names
    assert all(i.part == "images" and i.version == "1" for i in manifest.items)
    assert list(bundle.verify(root, bundle.load(root))) == []  # saved after each image
    # a re-run copies nothing
    said.clear()
    bundle_build.images(root, plan, manifest, said.append)
    assert said == [f"image {i.ref}: already here" for i in plan.images]

    # an altered blob is found by verify
    blob = max(blobs, key=lambda p: p.stat().st_size)
    original = blob.read_bytes()
    blob.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    (problem,) = bundle.verify(root, manifest)
    assert "sha256" in problem.message
    blob.write_bytes(original)

    # serve: the bundle's own registry, loaded from the bundle
    port = free_ports(4)
    try:
        served, overlay_path, notes = bundle_serve.serve(root, manifest, "127.0.0.1", port)
        registry = f"127.0.0.1:{port + bundle_serve.REGISTRY}"
        assert [(s.what, s.url, s.detail) for s in served] == [
            ("registry", f"http://{registry}", "2 of 2 images pushed")
        ]
        overlay = yaml.safe_load(overlay_path.read_text())
        assert overlay == {
            "docker_registry_mirrors": [f"http://{registry}"],
            "mineru_image_registry": f"{registry}/{source.replace(':', '-')}/aiprov",
            "docker_insecure_registries": [registry],
        }
        assert notes == []

        # pulled back: under the name the mineru role computes from the overlay, and
        # under the repository a Docker Hub mirror is asked for
        (tmp_path / "pulled").mkdir()
        for name in (
            f"{overlay['mineru_image_registry']}/tiny:1",
            f"{registry}/library/aiprov-tiny:1",
        ):
            pulled = tmp_path / "pulled" / name.replace("/", "_")
            run(
                "skopeo",
                "copy",
                "-q",
                "--src-tls-verify=false",
                f"docker://{name}",
                f"dir:{pulled}",
            )
            assert bundle.sha256_of(pulled / "manifest.json") == digest.removeprefix("sha256:")
            layer = json.loads((pulled / "manifest.json").read_text())["layers"][0]["digest"]
            with tarfile.open(pulled / layer.removeprefix("sha256:")) as tar:
                assert tar.extractfile("hello.txt").read() == CONTENT

        log = root / bundle_serve.SERVE_DIR / "registry.log"
        assert '"PUT /v2/' in log.read_text()  # the registry logs each request
        # a second serve restarts the registry and pushes nothing: it holds the digests
        served, _, _ = bundle_serve.serve(root, manifest, "127.0.0.1", port)
        assert served[0].detail == "0 of 2 images pushed"
        assert '"HEAD /v2/' in log.read_text() and '"PUT /v2/' not in log.read_text()
    finally:
        stopped = bundle_serve.stop(root)
    assert stopped == ["registry"]
    pid = served[0].pid
    for _ in range(50):
        if not os.path.exists(f"/proc/{pid}") or _zombie(pid):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the registry outlived --stop")


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return open(f"/proc/{pid}/stat").read().split(") ", 1)[1].startswith("Z")
    return True


@pytest.fixture
def docker_host():
    """A privileged Debian 13 sandbox host (dockerd needs it here) on podman's
    default network, and the address this machine has there."""
    probe = subprocess.run(["podman", "image", "exists", DOCKER_HOST_IMAGE], check=False)
    if probe.returncode:
        message = f"{DOCKER_HOST_IMAGE} is missing (run scripts/setup.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    gateway = run(
        "podman",
        "network",
        "inspect",
        "podman",
        "--format",
        "{{range .Subnets}}{{.Gateway}}{{end}}",
    ).strip()
    name = f"aiprov-test-bundle-docker-{os.getpid()}"
    subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)
    try:
        run(
            "podman", "run", "-d", "--name", name, "--privileged", "--systemd", "always",
            "--ulimit", "nofile=16384:16384", "--ulimit", "nproc=4096:4096",
            DOCKER_HOST_IMAGE, "/sbin/init",
        )  # fmt: skip
        # The image ships without apt lists (a real host has its lists).
        run("podman", "exec", name, "apt-get", "update", "-qq")
        yield name, gateway
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "2", name], capture_output=True, check=False)


@pytest.mark.sandbox
def test_dockerd_pulls_from_the_bundle_through_the_overlay(upstream, docker_host, tmp_path):
    source, digest = upstream
    host, gateway = docker_host
    plan = image_plan(source)
    root = tmp_path / "bundle"
    root.mkdir()
    manifest = bundle.Manifest(plan.target)
    bundle_build.images(root, plan, manifest, lambda line: None)
    port = free_ports(4)
    try:
        _, overlay_path, _ = bundle_serve.serve(root, manifest, gateway, port)
        # the docker role installs docker.io and merges daemon.json from the overlay
        inventory_file = tmp_path / "hosts.yml"
        inventory_file.write_text(
            yaml.safe_dump(
                {
                    "all": {
                        "hosts": {
                            host: {
                                "ansible_connection": "containers.podman.podman",
                                "ansible_python_interpreter": "/usr/bin/python3",
                                "docker_nvidia_toolkit_enabled": False,
                            }
                        }
                    }
                }
            )
        )
        playbook = tmp_path / "docker.yml"
        playbook.write_text("- name: Docker\n  hosts: all\n  roles: [docker]\n")
        ansible_playbook = str(Path(sys.executable).parent / "ansible-playbook")
        played = subprocess.run(
            [ansible_playbook, "-i", str(inventory_file), str(playbook), "-e", f"@{overlay_path}"],
            capture_output=True,
            text=True,
            check=False,
            env=os.environ | {"ANSIBLE_ROLES_PATH": str(REPO / "roles")},
            timeout=900,
        )
        assert played.returncode == 0, played.stdout[-3000:]
        overlay = yaml.safe_load(overlay_path.read_text())
        pulled_as = [HUB_REF, f"{overlay['mineru_image_registry']}/tiny:1"]
        for name in pulled_as:
            run("podman", "exec", host, "docker", "pull", "-q", name)
            digests = run(
                "podman", "exec", host,
                "docker", "image", "inspect", "--format", "{{json .RepoDigests}}", name,
            )  # fmt: skip
            assert digest in digests, digests
        container = run("podman", "exec", host, "docker", "create", pulled_as[1], "x").strip()
        copied = subprocess.run(
            ["podman", "exec", host, "docker", "cp", f"{container}:/hello.txt", "-"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(copied)) as tar:
            assert tar.extractfile("hello.txt").read() == CONTENT
        # the Docker Hub name came through registry-mirrors from the bundle's registry
        log = (root / bundle_serve.SERVE_DIR / "registry.log").read_text()
        assert '"GET /v2/library/aiprov-tiny/manifests/' in log
    finally:
        bundle_serve.stop(root)
