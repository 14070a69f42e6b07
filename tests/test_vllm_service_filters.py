"""A vLLM service's command line (aiprov.vllm_services), which the role's
filters and `aiprov validate` both use."""

import shlex

import pytest
import yaml

from aiprov import paths, unitfile
from aiprov import vllm_services as plugin

L20 = paths.profiles_dir() / "l20-8x"


def test_l20_reranker_argv():
    services = yaml.safe_load((L20 / "host_vars" / "l20-01.yml").read_text())
    catalog = yaml.safe_load((L20 / "group_vars" / "all.yml").read_text())
    reranker = services["vllm_service_services"][3]
    path = plugin.model_path(reranker, catalog["models_root"], catalog["models_catalog"])
    assert path == "/data/models/qwen3-reranker-4b"
    argv = plugin.service_argv(reranker, path)
    assert argv[:4] == ["--model", path, "--served-model-name", "RERANKER"]
    assert argv[argv.index("--runner") + 1] == "pooling"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.08"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "--enable-auto-tool-choice" not in argv
    assert argv[-2] == "--hf-overrides" and argv[-1].startswith('{"architectures"')


def test_unset_options_are_left_out():
    argv = plugin.service_argv(
        {"served_name": "m", "port": 8000, "quantization": None, "enable_auto_tool_choice": True},
        "/m",
        host="127.0.0.1",
    )
    assert argv == [
        "--model", "/m", "--served-model-name", "m", "--host", "127.0.0.1",
        "--port", "8000", "--enable-auto-tool-choice",
    ]  # fmt: skip


def test_model_path_prefers_local_dir_and_rejects_unknown_ids():
    catalog = [{"id": "a", "local_dir": "/big/a"}, {"id": "b"}]
    assert plugin.model_path({"model": "a"}, "/data/models", catalog) == "/big/a"
    assert plugin.model_path({"model": "b"}, "/data/models", catalog) == "/data/models/b"
    assert plugin.model_path({"model": "/abs/c"}, "/data/models", catalog) == "/abs/c"
    with pytest.raises(ValueError, match="not an id in models_catalog"):
        plugin.model_path({"name": "x", "model": "zz"}, "/data/models", catalog)


def test_systemd_quoting_keeps_json_and_specifiers():
    # The units are written by the service_unit role, through its one quoting function.
    quoting = unitfile
    words = ["/bin/x", '{"a": ["no", "yes"]}', "50%", "$HOME", "back\\slash"]
    line = quoting.quote(words, "exec")
    assert line == '"/bin/x" "{\\"a\\": [\\"no\\", \\"yes\\"]}" "50%%" "$$HOME" "back\\\\slash"'
    # systemd unquotes like a POSIX shell for these characters once % and $ are undone.
    assert shlex.split(line.replace("%%", "%").replace("$$", "$")) == words
    assert quoting.quote(["K=$V"], "env") == '"K=$V"'


def test_probe_host_is_loopback_for_wildcard_listen_addresses():
    assert plugin.probe_host("0.0.0.0") == "127.0.0.1"
    assert plugin.probe_host("::") == "127.0.0.1"
    assert plugin.probe_host("10.0.0.7") == "10.0.0.7"
    assert plugin.probe_host("127.0.0.1") == "127.0.0.1"
