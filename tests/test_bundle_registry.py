"""The images part of a bundle with real servers: a docker-registry as the source,
`bundle_build.images` copying from it with skopeo, `bundle_serve.serve` loading the
bundle into its own docker-registry, and the image pulled back from there."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import urllib.request
import uuid

import pytest
import yaml

from aiprov import bundle, bundle_build, bundle_plan, bundle_serve
from test_bundle_plan import inventory

TOOLS = ("docker-registry", "skopeo", "podman")
CONTENT = b"an image carried to hosts that reach nothing\n"


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
def upstream(tmp_path):
    """A real registry holding a tiny image pushed by podman as Docker format
    (v2s2, as Docker Hub serves); yields its address and the image's digest."""
    port = free_ports(1)
    config = tmp_path / "upstream.yml"
    store = tmp_path / "upstream-store"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(store)}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    log = (tmp_path / "upstream.log").open("w")
    server = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    image = f"localhost/aiprov-bundle-test-{uuid.uuid4().hex[:8]}:1"
    try:
        wait_for(f"http://127.0.0.1:{port}/v2/")
        context = tmp_path / "context"
        context.mkdir()
        (context / "hello.txt").write_bytes(CONTENT)
        (context / "Containerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
        run("podman", "build", "-q", "-t", image, str(context))
        destination = f"docker://127.0.0.1:{port}/aiprov/tiny:1"
        run("podman", "push", "-q", "--format", "v2s2", "--tls-verify=false", image, destination)
        digest = bundle_serve.held_digest(f"http://127.0.0.1:{port}", "aiprov/tiny", "1")
        assert digest.startswith("sha256:")
        yield f"127.0.0.1:{port}", digest
    finally:
        subprocess.run(["podman", "rmi", "-f", image], capture_output=True, check=False)
        server.terminate()
        server.wait(10)


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{argv[:3]}: {done.stderr}"
    return done.stdout


def test_images_copied_served_and_pulled_back(upstream, tmp_path, monkeypatch):
    source, digest = upstream
    # The source is plain HTTP: registries.conf says so, as a user's would.
    registries = tmp_path / "registries.conf"
    registries.write_text(f'[[registry]]\nlocation = "{source}"\ninsecure = true\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(registries))
    host = {"aiprov_gpu_family": "l20", "mineru_services": [{"name": "api"}]}
    host |= {"mineru_image_registry": f"{source}/aiprov", "mineru_image_name": "tiny"}
    host |= {"mineru_image_tag": "1"}
    plan = bundle_plan.plan(inventory(host))
    root = tmp_path / "bundle"
    root.mkdir()
    manifest = bundle.Manifest(plan.target)
    said: list[str] = []

    # --dry-run: the registry's manifest sizes what the build then copies
    estimate = bundle_build.Estimate()
    bundle_build.estimate_images(plan, estimate, said.append)
    assert estimate.notes == []

    # build: the registry's manifest and blobs, each file in the manifest with its sha256
    bundle_build.images(root, plan, manifest, said.append)
    image_dir = root / "images" / f"{source}/aiprov/tiny:1"
    blobs = [p for p in image_dir.iterdir() if len(p.name) == 64]
    assert estimate.sizes["images"] == sum(p.stat().st_size for p in blobs) > 0
    assert bundle.sha256_of(image_dir / "manifest.json") == digest.removeprefix("sha256:")
    assert {i.path.rsplit("/", 1)[-1] for i in manifest.items} >= {
        "manifest.json",
        bundle_serve.bundle_images.MARKER,
    }
    assert all(i.part == "images" and i.version == "1" for i in manifest.items)
    assert list(bundle.verify(root, bundle.load(root))) == []  # saved after the image
    # a re-run copies nothing
    said.clear()
    bundle_build.images(root, plan, manifest, said.append)
    assert said == [f"image {source}/aiprov/tiny:1: already here"]

    # an altered blob is found by verify
    blob = max(
        (p for p in image_dir.iterdir() if len(p.name) == 64), key=lambda p: p.stat().st_size
    )
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
            ("registry", f"http://{registry}", "1 of 1 images pushed")
        ]
        overlay = yaml.safe_load(overlay_path.read_text())
        assert overlay == {
            "mineru_image_registry": f"{registry}/{source.replace(':', '-')}/aiprov",
            "docker_daemon_options": {"insecure-registries": [registry]},
        }
        assert len(notes) == 1 and "docker_daemon_options" in notes[0]

        # pulled back under the name the mineru role computes from the overlay
        pulled = tmp_path / "pulled"
        name = f"{overlay['mineru_image_registry']}/tiny:1"
        run("skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{name}", f"dir:{pulled}")
        assert bundle.sha256_of(pulled / "manifest.json") == digest.removeprefix("sha256:")
        layer = json.loads((pulled / "manifest.json").read_text())["layers"][0]["digest"]
        with tarfile.open(pulled / layer.removeprefix("sha256:")) as tar:
            assert tar.extractfile("hello.txt").read() == CONTENT

        log = root / bundle_serve.SERVE_DIR / "registry.log"
        assert '"PUT /v2/' in log.read_text()  # the registry logs each request
        # a second serve restarts the registry and pushes nothing: it holds the digest
        served, _, _ = bundle_serve.serve(root, manifest, "127.0.0.1", port)
        assert served[0].detail == "0 of 1 images pushed"
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
