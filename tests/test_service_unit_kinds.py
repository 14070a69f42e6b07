"""The shared unit's other kinds of service: a oneshot compose unit (Dify,
MinerU) and the models cache's rsync daemon with its rsync:// health gate, as
the roles build them; systemd-analyze rates each at 3.5 or less offline."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading

import pytest
import yaml

from test_service_unit import PROBE, ROLE, directives, plugin, render, unquote_words, value_of  # noqa: F401

REPO = ROLE.parent.parent


def _role_unit(role: str, key: str, helpers: list[str], **variables) -> dict:
    """The role's unit entry from its vars/main.yml (and the helper vars it
    uses), templated with plain Jinja."""
    import jinja2

    raw = yaml.safe_load((REPO / "roles" / role / "vars" / "main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    context = dict(variables)
    for name in helpers:
        context[name] = yaml.safe_load(env.from_string(raw[name]).render(context))

    def resolve(value):
        if isinstance(value, str):
            rendered = env.from_string(value).render(context)
            return yaml.safe_load(rendered) if value.startswith("{{") else rendered
        if isinstance(value, list):
            return [resolve(item) for item in value]
        return value

    return {name: resolve(value) for name, value in raw[key].items()}


def _compose_units() -> list[dict]:
    dify = _role_unit(
        "dify", "_dify_service_unit", ["_dify_compose_argv"],
        dify_version="1.13.3", dify_project_dir="/opt/aiprov/dify/docker",
        dify_compose_command="/usr/bin/docker compose",
    )  # fmt: skip
    mineru = _role_unit(
        "mineru", "_mineru_service_unit", ["_mineru_compose_up"],
        mineru_version="2.5.4", mineru_project_dir="/opt/aiprov/mineru",
        mineru_compose_command="/usr/bin/docker compose", mineru_image_build=True,
    )  # fmt: skip
    return [dify, mineru]


def _cache_unit() -> dict:
    tasks = yaml.safe_load((REPO / "roles" / "models" / "tasks" / "cache.yml").read_text())
    (task,) = [t for t in tasks if t["name"] == "Write the cache's unit"]
    (entry,) = task["vars"]["service_unit_units"]
    text = yaml.safe_dump(entry)
    for name, value in {"models_cache_port": "8730", "models_cache_user": "aiprov-models-cache",
                        "models_cache_group": "aiprov-models-cache"}.items():  # fmt: skip
        text = re.sub(r"\{\{ " + name + r" \}\}", value, text)
    return yaml.safe_load(text)


def _dcgm_unit(image: str = "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.5-3.4.1-ubuntu22.04") -> dict:
    return _role_unit(
        "monitoring", "_monitoring_dcgm_unit", ["_monitoring_dcgm_container"],
        _monitoring_docker="/usr/bin/docker", monitoring_dcgm_exporter_port=9400,
        monitoring_dcgm_exporter_image=image,
    )  # fmt: skip


def test_dcgm_exporter_unit_runs_the_container_in_the_foreground(plugin):  # noqa: F811
    image = "mirror.example/nvidia/dcgm-exporter:3.3.5-3.4.1-ubuntu22.04"
    text = render(plugin, _dcgm_unit(image))
    (pre,) = value_of(text, "ExecStartPre")
    assert pre.startswith("-") and unquote_words(pre[1:]) == [
        "/usr/bin/docker", "rm", "--force", "aiprov-dcgm-exporter",
    ]  # fmt: skip
    start = unquote_words(value_of(text, "ExecStart")[0])
    assert start[:5] == ["/usr/bin/docker", "run", "--rm", "--name", "aiprov-dcgm-exporter"]
    # An inventory value stays one argv word, on one line.
    assert start[-2:] == ["127.0.0.1:9400:9400", image]
    assert value_of(text, "User") == ["root"] and value_of(text, "CapabilityBoundingSet") == [""]
    (post,) = value_of(text, "ExecStartPost")
    assert "http://127.0.0.1:9400/metrics" in post
    assert value_of(text, "Requires") == ["docker.service"]


def test_compose_units_are_oneshot_up_reload_down(plugin):  # noqa: F811
    dify, mineru = _compose_units()
    text = render(plugin, dify)
    assert "Type=oneshot" in text and "RemainAfterExit=yes" in text
    assert [unquote_words(v) for v in value_of(text, "ExecStart")] == [
        ["/usr/bin/docker", "compose", "up", "--detach", "--remove-orphans"]
    ]
    assert [unquote_words(v) for v in value_of(text, "ExecReload")] == [
        ["/usr/bin/docker", "compose", "up", "--detach", "--remove-orphans"]
    ]
    assert [unquote_words(v) for v in value_of(text, "ExecStop")] == [
        ["/usr/bin/docker", "compose", "down"]
    ]
    assert value_of(text, "Requires") == ["docker.service"] and "docker.service" in value_of(
        text, "After"
    )
    assert value_of(text, "ProtectHome") == ["read-only"]
    assert value_of(text, "User") == ["root"] and value_of(text, "CapabilityBoundingSet") == [""]
    # No restart loop and no health gate on a oneshot (systemd < 244 refuses Restart= there).
    assert not value_of(text, "Restart") and not value_of(text, "ExecStartPost")
    assert value_of(text, "MemoryDenyWriteExecute") == ["yes"]
    assert unquote_words(value_of(render(plugin, mineru), "ExecStart")[0])[-1] == "--build"


def test_cache_unit_is_gated_by_an_rsync_greeting(plugin):  # noqa: F811
    text = render(plugin, _cache_unit())
    assert value_of(text, "User") == ["aiprov-models-cache"]
    assert not value_of(text, "ReadWritePaths")  # reads the models, writes nothing
    (post,) = value_of(text, "ExecStartPost")
    assert unquote_words(post.rsplit(" ", 2)[0]) == [
        "/usr/local/libexec/aiprov/wait-healthy", "rsync://127.0.0.1:8730/",
    ]  # fmt: skip
    assert unquote_words(value_of(text, "ExecStart")[0])[:3] == [
        "/usr/bin/rsync",
        "--daemon",
        "--no-detach",
    ]


@pytest.mark.parametrize(
    ("field", "value"), [("type", "forking"), ("protect_home", "no\nUser=root")]
)
def test_fixed_choices_refuse_other_values(plugin, field, value):  # noqa: F811
    with pytest.raises(plugin.QuoteError):
        render(plugin, dict(_compose_units()[0], **{field: value}))


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_compose_cache_and_dcgm_units_rate_3_5_or_less_offline(plugin, tmp_path):  # noqa: F811
    for entry in [*_compose_units(), _cache_unit(), _dcgm_unit()]:
        entry = dict(entry, working_directory=str(tmp_path))
        path = tmp_path / f"{entry['name']}.service"
        path.write_text(render(plugin, entry))
        analyze = ["systemd-analyze", "--no-pager"]
        verify = subprocess.run(
            [*analyze, "verify", "--man=no", str(path)], capture_output=True, text=True, check=False
        )
        # The test machine lacks docker, rsync, the probe and the users.
        missing = (
            r"Failed to look up|System has not been booted|Failed to connect to bus|"
            r"docker.service|wait-healthy|/usr/bin/(docker|rsync)"
        )
        problems = [line for line in verify.stderr.splitlines() if not re.search(missing, line)]
        assert not problems, verify.stderr
        rating = subprocess.run(
            [*analyze, "security", "--offline=true", str(path)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", rating.stdout)
        assert found and float(found.group(1)) <= 3.5, (entry["name"], rating.stdout[-300:])


def _greeter(greeting: bytes):
    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(greeting)
                if greeting.startswith(b"@RSYNCD"):
                    seen.append(conn.recv(100))
                    conn.sendall(b"@RSYNCD: EXIT\n")

    threading.Thread(target=serve, daemon=True).start()
    return server, seen


def _probe(*args, timeout=30):
    return subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, timeout=timeout)


def test_probe_waits_for_an_rsync_daemons_greeting():
    server, seen = _greeter(b"@RSYNCD: 31.0 sha512 sha256 sha1 md5 md4\n")
    try:
        url = f"rsync://127.0.0.1:{server.getsockname()[1]}/"
        assert _probe(url, "1", "0.2").returncode == 0
        assert seen and seen[0].startswith(b"@RSYNCD: 30.0\n")
    finally:
        server.close()
    # Something else on the port (an HTTP server, a bare TCP accept) is not the daemon:
    # the probe goes on waiting until the main process is gone.
    other, _ = _greeter(b"HTTP/1.0 400 Bad Request\r\n\r\n")
    try:
        url = f"rsync://127.0.0.1:{other.getsockname()[1]}/"
        assert _probe(url, "999999999", "0.2", timeout=10).returncode == 1
    finally:
        other.close()
    assert _probe("rsync:///", "1", "1").returncode == 2
