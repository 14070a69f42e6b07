"""The service_unit role's unit template and its quoting filter: hostile values
(newlines, quotes, $, %, backslashes, blanks) stay inside their own directive
and reach systemd unchanged; systemd-analyze verify accepts the result."""

import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import jinja2
import pytest
import yaml

from aiprov import paths, vllm_services

ROLE = paths.roles_dir() / "service_unit"
PROBE = ROLE / "files" / "wait-healthy"

HOSTILE = "evil\nExecStartPre=/bin/rm -rf /\n[Service]\nUser=root"


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def plugin():
    return _load(ROLE / "filter_plugins" / "service_unit.py", "service_unit_filters")


@pytest.fixture(scope="module")
def vllm():
    return vllm_services


def render(plugin, unit, systemd_version=252, **overrides):
    # Ansible's template module: trim_blocks on, lstrip_blocks off.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ROLE / "templates")),
        trim_blocks=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(plugin.FilterModule().filters())
    context = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    context.update(overrides)
    context.update(
        item=unit,
        ansible_managed="Ansible managed",
        _service_unit_systemd_version=systemd_version,
    )
    return env.get_template("service.j2").render(context)


def unit(**overrides):
    base = {
        "name": "aiprov-test",
        "description": "aiprov test service",
        "exec_start": ["/bin/echo", "--served-model-name", "m"],
        "user": "aiprov",
        "group": "aiprov",
        "working_directory": "/var/lib/aiprov",
        "environment": {"HOME": "/var/lib/aiprov", "A": "1"},
        "environment_files": ["/etc/aiprov/key.env"],
        "read_write_paths": ["/var/lib/aiprov"],
        "gpu": False,
        "health_url": "http://127.0.0.1:8000/health",
    }
    base.update(overrides)
    return base


def directives(text):
    """(section, key) of every directive line, in order; continuation lines are errors."""
    found, section = [], None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        assert not line.rstrip().endswith("\\"), f"line continues onto the next: {line!r}"
        if re.fullmatch(r"\[\w+\]", line):
            section = line
            continue
        key, sep, _ = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z]+", key), f"not a directive: {line!r}"
        found.append((section, key))
    return found


def unquote_words(text):
    """systemd's splitting of a quoted value (extract_first_word with
    EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE), for the forms service_unit_quote writes."""
    words, i = [], 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"'}
    while i < len(text):
        if text[i] == " ":
            i += 1
            continue
        assert text[i] == '"', text[i:]
        i += 1
        word = []
        while text[i] != '"':
            if text[i] == "\\":
                if text[i + 1] == "x":
                    word.append(chr(int(text[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                word.append(escapes[text[i + 1]])
                i += 2
                continue
            word.append(text[i])
            i += 1
        words.append("".join(word))
        i += 1
    return words


def value_of(text, key):
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


HOSTILE_UNIT = {
    "description": f"served {HOSTILE} 100% \\",
    "exec_start": [
        "/bin/echo",
        "--served-model-name",
        HOSTILE,
        'q"uote',
        "$HOME",
        "%n",
        "a b",
        "back\\",
    ],
    "environment": {
        "HOME": "/var/lib/aiprov",
        "A": HOSTILE,
        "B": 'say "hi" $HOME ${MAINPID} %h \\',
        "C": "tab\there\rbell\x07",
    },
    "health_url": "http://bad host\nExecStartPre=/bin/sh:8000/health",
    "read_write_paths": ["/var/lib/aiprov", "/srv/a b", "/srv/new\nline"],
}


def test_hostile_values_add_no_directive(plugin):
    benign = render(plugin, unit())
    hostile = render(plugin, unit(**HOSTILE_UNIT))
    # Two more Environment= lines (four variables instead of two), nothing else.
    assert Counter(directives(hostile)) - Counter(directives(benign)) == Counter(
        {("[Service]", "Environment"): 2}
    )
    assert Counter(directives(benign)) - Counter(directives(hostile)) == Counter()
    assert "ExecStartPre" not in [key for _, key in directives(hostile)]
    assert value_of(hostile, "User") == ["aiprov"]


def test_hostile_values_reach_systemd_unchanged(plugin):
    text = render(plugin, unit(**HOSTILE_UNIT))
    (exec_start,) = value_of(text, "ExecStart")
    # Undo the specifier and variable escapes systemd applies to Exec lines.
    words = [w.replace("%%", "%").replace("$$", "$") for w in unquote_words(exec_start)]
    assert words == HOSTILE_UNIT["exec_start"]
    lines = value_of(text, "Environment")
    env = [word.replace("%%", "%") for line in lines for word in unquote_words(line)]
    assert env == [f"{k}={v}" for k, v in HOSTILE_UNIT["environment"].items()]
    (post,) = value_of(text, "ExecStartPost")
    head, tail = post.rsplit('" ', 1)
    assert tail == "${MAINPID} 2"
    assert [w.replace("$$", "$") for w in unquote_words(head + '"')] == [
        "/usr/local/libexec/aiprov/wait-healthy",
        HOSTILE_UNIT["health_url"],
    ]
    (rw,) = value_of(text, "ReadWritePaths")
    assert unquote_words(rw) == HOSTILE_UNIT["read_write_paths"]
    (description,) = value_of(text, "Description")
    assert description.startswith("served evil ExecStartPre")
    assert description.endswith("User=root 100%%")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user", "root\nExecStartPre=/bin/sh"),
        ("group", "a b"),
        ("name", "../../etc/passwd"),
        ("working_directory", "/var/lib/aiprov\nUser=root"),
        ("working_directory", "relative"),
        ("exec_start", ["echo", "relative"]),
        ("environment_files", ["/etc/key\nUser=root"]),
        ("environment", {"BAD KEY": "x"}),
        ("after", ["a.service\nUser=root"]),
        ("syslog_identifier", "id\nUser=root"),
    ],
)
def test_values_that_cannot_be_written_safely_are_refused(plugin, field, value):
    with pytest.raises(plugin.QuoteError):
        render(plugin, unit(**{field: value}))


def test_gpu_units_get_the_nvidia_devices_cpu_units_private_devices(plugin):
    gpu = render(plugin, unit(gpu=True))
    assert "DevicePolicy=closed" in gpu and "PrivateDevices=yes" not in gpu
    assert "DeviceAllow=/dev/nvidiactl rw" in gpu and "DeviceAllow=char-nvidia-uvm rw" in gpu
    cpu = render(plugin, unit())
    assert "PrivateDevices=yes" in cpu and "DeviceAllow" not in cpu


def test_restart_back_off_needs_systemd_254(plugin):
    assert "RestartSteps=5" not in render(plugin, unit(), systemd_version=252)
    newer = render(plugin, unit(restart_max_delay=120), systemd_version=257)
    assert "RestartSteps=5" in newer and "RestartMaxDelaySec=120" in newer


def test_vllm_units_render_through_the_block(plugin, vllm):
    services = [
        {"name": "llm", "model": "/m/a", "served_name": 'LL"M\n', "port": 8000, "gpus": [0, 1]},
        {"name": "emb", "model": "/m/b", "served_name": "E", "port": 8001, "gpus": [1],
         "host": "::", "environment": {"X": "50%"}},
    ]  # fmt: skip
    settings = {
        "venv": "/opt/aiprov/vllm/vllm-0.11.0", "user": "aiprov", "group": "aiprov",
        "home": "/var/lib/aiprov", "key_file": "/etc/aiprov/vllm-api-key.env", "host": "0.0.0.0",
        "models_root": "/data/models", "catalog": [], "environment": {"HF_HUB_OFFLINE": "1"},
        "gpu": True, "start_timeout": 1800, "restart_sec": 10, "restart_max_delay": 300,
        "limit_nofile": 65536,
    }  # fmt: skip
    units = vllm.units(services, settings)
    assert units[1]["after"] == ["aiprov-vllm-llm.service"] and units[0]["after"] == []
    assert units[1]["health_url"] == "http://127.0.0.1:8001/health"
    assert units[0]["environment"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    text = render(plugin, units[0])
    (exec_start,) = value_of(text, "ExecStart")
    assert unquote_words(exec_start)[:6] == [
        "/opt/aiprov/vllm/vllm-0.11.0/bin/python", "-m", "vllm.entrypoints.openai.api_server",
        "--model", "/m/a", "--served-model-name",
    ]  # fmt: skip
    assert unquote_words(exec_start)[6] == 'LL"M\n'
    assert set(directives(text)) == set(directives(render(plugin, unit(gpu=True, limit_nofile=1))))
    assert 'Environment="X=50%%"' in render(plugin, units[1])


def probe(*args, timeout=30):
    return subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, timeout=timeout)


def test_probe_script_checks_its_arguments_and_sees_a_dead_main_process():
    assert probe("http://x", "1; rm -rf /", "1").returncode == 2
    assert probe("file:///etc/passwd", "1", "1").returncode == 2
    # A main process that is gone: exit 1 without waiting.
    assert probe("http://127.0.0.1:9/", "999999999", "1", timeout=10).returncode == 1


def test_probe_script_exits_0_once_the_url_answers():
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        # PID 1 belongs to root: EPERM means alive, so the probe goes on to the URL.
        assert probe(url, str(os.getpid()), "0.2").returncode == 0
        assert probe(url, "1", "0.2").returncode == 0
    finally:
        server.shutdown()


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
@pytest.mark.parametrize("gpu", [False, True])
def test_systemd_analyze_verify_accepts_the_hostile_unit(plugin, tmp_path, gpu):
    hostile = dict(HOSTILE_UNIT, gpu=gpu, working_directory=str(tmp_path))
    text = render(plugin, unit(**hostile), service_unit_probe_path=str(PROBE))
    path = tmp_path / "aiprov-test.service"
    path.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    problems = [
        line
        for line in result.stderr.splitlines()
        # The test machine has no aiprov user, no NVIDIA devices and may not run systemd.
        if not re.search(r"Couldn't stat device|Failed to look up|System has not been booted|"
                         r"Failed to connect to bus|/etc/aiprov/key.env", line)
    ]  # fmt: skip
    assert result.returncode == 0 and not problems, result.stderr


# The nodes a CUDA process opens on a real H100 host (driver 580), by major
# number, as listed next to the /proc/devices captured there.
_H100_NODES = {
    "/dev/nvidia0": 195, "/dev/nvidiactl": 195, "/dev/nvidia-uvm": 238,
    "/dev/nvidia-uvm-tools": 238, "/dev/nvidia-caps/nvidia-cap2": 241,
}  # fmt: skip


def test_gpu_services_may_open_every_node_of_a_real_gpu_host():
    """DeviceAllow=char-NAME matches a name in /proc/devices: with driver 580 the
    GPUs' major is called "nvidia", not the older "nvidia-frontend"."""
    import fnmatch

    text = (Path(__file__).parent / "fixtures" / "h100-proc-devices.txt").read_text()
    majors: dict[str, int] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            major, name = line.split()
            majors[name] = int(major)
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    allowed = [entry.split()[0] for entry in defaults["service_unit_gpu_devices"]]
    classes = [entry.removeprefix("char-") for entry in allowed if entry.startswith("char-")]
    for node, major in _H100_NODES.items():
        by_class = any(
            fnmatch.fnmatch(name, pattern) and number == major
            for pattern in classes
            for name, number in majors.items()
        )
        assert node in allowed or by_class, node
