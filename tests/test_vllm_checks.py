"""Inventories the vLLM checks must accept: what the broken corpus must not over-reach."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiprov.cli import main


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def validate(inv: Path, *extra: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["validate", "-i", str(inv), *extra], env=env)


def test_cpu_host_with_the_tests_tiny_model_passes(tmp_path):
    inv = write(
        tmp_path,
        {
            "hosts.yml": "all:\n  hosts:\n    box:\n",
            "host_vars/box.yml": """
aiprov_gpu_family: cpu
aiprov_gpu_count: 0
vllm_service_api_key: "{{ lookup('ansible.builtin.env', 'AIPROV_VLLM_API_KEY') }}"
models_catalog:
  - {id: tiny-qwen2, hub: huggingface, repo: aiprov/tiny-qwen2, revision: main}
vllm_service_version: "0.32.0"
vllm_service_services:
  - name: chat
    model: tiny-qwen2
    served_name: tiny
    port: 18000
    max_model_len: 2048
    extra_args: [--enforce-eager, --max_num_seqs, "4", --dtype=bfloat16]
""",
        },
    )
    result = validate(inv, "--strict")
    assert result.exit_code == 0, result.output + result.stderr


def test_model_by_absolute_path_reads_its_config(tmp_path):
    model = tmp_path / "weights" / "m"
    model.mkdir(parents=True)
    config = {
        "model_type": "qwen2", "num_attention_heads": 6, "num_key_value_heads": 2,
        "hidden_size": 384, "num_hidden_layers": 2, "vocab_size": 1000,
        "max_position_embeddings": 4096, "torch_dtype": "bfloat16",
    }  # fmt: skip
    (model / "config.json").write_text(json.dumps(config))
    inv = write(
        tmp_path / "inv",
        {
            "hosts.yml": "all:\n  children:\n    a10:\n      hosts:\n        g:\n",
            "host_vars/g.yml": f"""
vllm_service_services:
  - name: chat
    model: {model}
    served_name: m
    port: 18000
    gpus: [0, 1, 2, 3]
    tensor_parallel_size: 4
""",
        },
    )
    result = validate(inv)
    assert result.exit_code == 4
    assert "4 does not divide the 6 attention heads of m" in " ".join(result.stderr.split())


def test_an_unknown_model_is_a_warning_that_strict_turns_into_failure(tmp_path):
    inv = write(
        tmp_path / "inventory",
        {
            "hosts.yml": "all:\n  children:\n    a10:\n      hosts:\n        g:\n",
            "host_vars/g.yml": """
nvidia_driver_branch: "580"
vllm_service_api_key: "{{ lookup('ansible.builtin.env', 'AIPROV_VLLM_API_KEY') }}"
models_catalog:
  - {id: mystery, hub: huggingface, repo: someone/mystery-7b, revision: main}
vllm_service_services:
  - {name: chat, model: mystery, served_name: m, port: 18000, gpus: [0]}
""",
        },
    )
    assert validate(inv).exit_code == 0
    strict = validate(inv, "--strict")
    assert strict.exit_code == 4
    assert "no architecture facts for 'mystery'" in strict.stderr
    # Its files on this machine make it known.
    models = write(tmp_path / "models", {"mystery/config.json": json.dumps(
        {"num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096,
         "num_hidden_layers": 32, "max_position_embeddings": 32768})})  # fmt: skip
    known = validate(inv, "--strict", env={"AIPROV_MODELS_DIR": str(models)})
    assert known.exit_code == 0, known.stderr


GARBAGE = [
    "vllm_service_services: {name: llm}",
    "vllm_service_services: just a string",
    "vllm_service_services: [a, b, 3, null]",
    "vllm_service_services: [{}]",
    "vllm_service_services: [{name: x, model: null, served_name: y, port: 1}]",
    "vllm_service_services: [{name: x, model: m, served_name: y, port: [1], gpus: {a: 1}}]",
    "vllm_service_services: [{name: x, model: m, served_name: y, port: 8000, gpus: [0],"
    " tensor_parallel_size: 0, pipeline_parallel_size: -1}]",
    "vllm_service_services: [{name: x, model: m, served_name: y, port: 8000, gpus: [0],"
    " gpu_memory_utilization: 0}]",
    "vllm_service_services: [{name: x, model: m, served_name: y, port: 8000, gpus: [0],"
    " extra_args: {a: b}}]",
    "vllm_service_services: [{name: x, model: m, served_name: y, port: 8000, gpus: [0],"
    " extra_args: ['--', '-', '', '--=', '-O', '--hf-overrides.', '=x']}]",
    "vllm_service_services: [{name: x, model: m, served_name: '{{ nope }}', port: 8000}]",
    "vllm_service_version: [1, 2]\nvllm_service_services: [{name: x, model: m,"
    " served_name: y, port: 8000, gpus: [0]}]",
    "models_catalog: 7\nvllm_service_services: [{name: x, model: m, served_name: y,"
    " port: 8000, gpus: [0]}]",
    "aiprov_gpu_memory_gib: -3\naiprov_gpu_count: -1\nvllm_service_services: [{name: x,"
    " model: m, served_name: y, port: 8000, gpus: [0, 99]}]",
]


@pytest.mark.parametrize("host_vars", GARBAGE)
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_no_traceback_on_garbage(tmp_path, host_vars, command):
    inv = write(
        tmp_path,
        {
            "hosts.yml": "all:\n  children:\n    a10:\n      hosts:\n        g:\n",
            "host_vars/g.yml": "models_catalog: [{id: m, hub: huggingface, repo: BAAI/bge-m3,"
            " revision: main}]\n" * ("models_catalog" not in host_vars) + host_vars + "\n",
        },
    )
    result = CliRunner().invoke(main, [command, "-i", str(inv)])
    assert result.exit_code in (0, 4), result.output + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output + result.stderr


def test_a_port_behind_a_switched_off_feature_is_free(monkeypatch):
    from aiprov import paths, vllm_checks
    from aiprov.inventory import Host

    def fake_defaults(role):
        return {"base_proxy_port": 9100, "base_proxy_enabled": False} if role == "base" else {}

    monkeypatch.setattr(paths, "role_defaults", fake_defaults)
    assert 9100 not in vllm_checks.other_ports(Host("h", [], {}))
    on = Host("h", [], {"base_proxy_enabled": True})
    assert vllm_checks.other_ports(on)[9100] == "base_proxy_port"


def test_the_bundle_hosts_ports_are_taken_only_on_a_bundle_host():
    from aiprov import vllm_checks
    from aiprov.inventory import Host

    assert 8780 not in vllm_checks.other_ports(Host("h", [], {}))
    assert vllm_checks.other_ports(Host("h", ["bundle_host"], {}))[8780] == "bundle_host_index_port"
