"""The dify role's provider registration (roles/dify/library/dify_model_providers.py).

Runs against tests/fake_dify.py, a recording stand-in that accepts only the
request shapes Dify 1.13's console API source defines. Not a live Dify.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fake_dify import OPENAI_COMPATIBLE, FakeDify

REPO = Path(__file__).resolve().parent.parent
LIBRARY = REPO / "roles" / "dify" / "library"


def _load_module():
    spec = importlib.util.spec_from_file_location(
        "dify_model_providers", LIBRARY / "dify_model_providers.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dmp = _load_module()

ADMIN = {"email": "admin@example.com", "name": "admin", "password": "Str0ngPassw0rd"}
# The L20 inventory's services (inventories/l20-8x/host_vars/l20-01.yml), trimmed.
VLLM_SERVICES = [
    {
        "name": "llm",
        "served_name": "LLM",
        "port": 10000,
        "max_model_len": 65536,
        "enable_auto_tool_choice": True,
    },
    {"name": "vlm", "served_name": "VLM", "port": 10001, "max_model_len": 42000},
    {
        "name": "embedding",
        "served_name": "EMBEDDING",
        "runner": "pooling",
        "port": 10004,
        "max_model_len": 8192,
    },
    {
        "name": "reranker",
        "served_name": "RERANKER",
        "runner": "pooling",
        "port": 10005,
        "max_model_len": 8192,
    },
]


def _register(url: str, models, api_key="sk-test", check_mode=False):
    console = dmp.Console(url, timeout=5)
    console.ensure_admin(ADMIN["email"], ADMIN["name"], ADMIN["password"])
    console.login(ADMIN["email"], ADMIN["password"])
    return dmp.sync(console, OPENAI_COMPATIBLE, models, api_key, check_mode)


def test_models_from_vllm_types_endpoints_and_context():
    models = dmp.models_from_vllm(VLLM_SERVICES, "10.0.0.5")
    assert [(m["name"], m["type"]) for m in models] == [
        ("LLM", "llm"),
        ("VLM", "llm"),
        ("EMBEDDING", "text-embedding"),
        ("RERANKER", "rerank"),
    ]
    assert models[0]["endpoint_url"] == "http://10.0.0.5:10000/v1"
    assert models[0]["context_size"] == 65536
    assert models[0]["function_calling_type"] == "tool_call"
    assert "function_calling_type" not in models[1]


def test_first_run_sets_up_admin_logs_in_and_creates_every_model():
    with FakeDify() as dify:
        results = _register(dify.url, dmp.models_from_vllm(VLLM_SERVICES, "10.0.0.5"))
        assert [r["action"] for r in results] == ["created"] * 4
        setup = next(r for r in dify.requests if r["path"] == "/setup" and r["method"] == "POST")
        assert setup["body"] == ADMIN
        login = next(r for r in dify.requests if r["path"] == "/login")
        assert login["body"]["password"] != ADMIN["password"]  # sent base64-encoded
        creds = dify.credentials[(OPENAI_COMPATIBLE, "llm", "LLM")]["credentials"]
        assert creds == {
            "endpoint_url": "http://10.0.0.5:10000/v1",
            "api_key": "sk-test",
            "context_size": "65536",
            "mode": "chat",
            "max_tokens_to_sample": "65536",
            "function_calling_type": "tool_call",
        }
        embedding = dify.credentials[(OPENAI_COMPATIBLE, "text-embedding", "EMBEDDING")][
            "credentials"
        ]
        assert embedding["max_chunks"] == "32"
        assert embedding["context_size"] == "8192"
        rerank = dify.credentials[(OPENAI_COMPATIBLE, "rerank", "RERANKER")]["credentials"]
        assert rerank == {
            "endpoint_url": "http://10.0.0.5:10005/v1",
            "api_key": "sk-test",
            "context_size": "8192",
        }
        # Every authenticated call carried the CSRF header (the fake rejects it otherwise).
        writes = dify.writes()
        assert {w["path"] for w in writes} == {
            "/setup",
            f"/workspaces/current/model-providers/{OPENAI_COMPATIBLE}/models/credentials",
        }


def test_second_run_changes_nothing():
    with FakeDify() as dify:
        models = dmp.models_from_vllm(VLLM_SERVICES, "10.0.0.5")
        _register(dify.url, models)
        before = len(dify.writes())
        results = _register(dify.url, models)
        assert [r["action"] for r in results] == ["unchanged"] * 4
        assert len(dify.writes()) == before


def test_changed_context_or_key_updates_the_same_credential():
    with FakeDify() as dify:
        models = dmp.models_from_vllm(VLLM_SERVICES, "10.0.0.5")
        _register(dify.url, models)
        first_id = dify.credentials[(OPENAI_COMPATIBLE, "llm", "LLM")]["id"]
        models[0]["context_size"] = 32768
        results = _register(dify.url, models, api_key="sk-rotated")
        assert [r["action"] for r in results] == ["updated"] * 4  # the key changed for all
        stored = dify.credentials[(OPENAI_COMPATIBLE, "llm", "LLM")]
        assert stored["id"] == first_id
        assert stored["credentials"]["context_size"] == "32768"
        assert stored["credentials"]["api_key"] == "sk-rotated"
        put = [w for w in dify.writes() if w["method"] == "PUT"]
        assert put and all(w["body"]["credential_id"] for w in put)


def test_check_mode_reports_without_writing():
    with FakeDify() as dify:
        console = dmp.Console(dify.url, timeout=5)
        console.ensure_admin(ADMIN["email"], ADMIN["name"], ADMIN["password"])
        console.login(ADMIN["email"], ADMIN["password"])
        results = dmp.sync(
            console, OPENAI_COMPATIBLE, dmp.models_from_vllm(VLLM_SERVICES, "h"), "", True
        )
        assert [r["action"] for r in results] == ["created"] * 4
        assert dify.credentials == {}


def test_missing_plugin_is_a_clear_error():
    with (
        FakeDify(providers=("langgenius/openai/openai",)) as dify,
        pytest.raises(dmp.DifyError) as error,
    ):
        _register(dify.url, dmp.models_from_vllm(VLLM_SERVICES, "h"))
    assert "OpenAI-API-compatible plugin" in str(error.value)


def test_wrong_password_is_reported_with_dify_message():
    with FakeDify() as dify:
        console = dmp.Console(dify.url, timeout=5)
        console.ensure_admin(ADMIN["email"], ADMIN["name"], ADMIN["password"])
        with pytest.raises(dmp.DifyError, match=r"HTTP 401: Invalid email or password"):
            console.login(ADMIN["email"], "wrong-password-1")


def test_weak_admin_password_is_refused_before_setup():
    with FakeDify() as dify, pytest.raises(dmp.DifyError, match="letter and a digit"):
        dmp.Console(dify.url).ensure_admin("a@example.com", "admin", "onlyletters")
    assert dify.admin is None


def test_unknown_model_type_is_refused():
    with pytest.raises(dmp.DifyError, match="type must be one of"):
        dmp.credentials_for({"name": "x", "type": "embedding", "endpoint_url": "http://h/v1"}, "")


def test_fingerprint_fits_dify_name_limit():
    assert len(dmp.fingerprint({"endpoint_url": "http://h/v1", "api_key": "k" * 200})) <= 30


def test_ansible_module_end_to_end(tmp_path):
    """The module as Ansible runs it: argument spec, no_log, changed, idempotence."""
    with FakeDify() as dify:
        args = {
            "console_url": dify.url,
            "admin_email": ADMIN["email"],
            "admin_password": ADMIN["password"],
            "api_key": "sk-test",
            "vllm_services": VLLM_SERVICES,
            "vllm_host": "10.0.0.5",
            "timeout": 5,
        }
        args_file = tmp_path / "args.json"
        args_file.write_text(json.dumps(args))
        env = dict(
            os.environ,
            ANSIBLE_LIBRARY=str(LIBRARY),
            ANSIBLE_STDOUT_CALLBACK="json",
            ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        )
        playbook = tmp_path / "play.yml"
        task = f"dify_model_providers: \"{{{{ lookup('file', '{args_file}') | from_json }}}}\""
        playbook.write_text(
            "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
            f"    - {task}\n      register: first\n"
            f"    - {task}\n      register: second\n"
            "    - assert:\n        that: [first is changed, second is not changed]\n"
        )
        bin_dir = Path(sys.executable).parent
        result = subprocess.run(
            [
                str(bin_dir / "ansible-playbook"),
                *("-i", "localhost,", "-c", "local", str(playbook)),
                *("-e", f"ansible_python_interpreter={sys.executable}"),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert ADMIN["password"] not in result.stdout
        assert "sk-test" not in result.stdout
        assert len(dify.credentials) == 4


def test_models_reach_the_front_over_https_with_a_services_own_key():
    keys = {VLLM_SERVICES[0]["name"]: "own-key-123"}
    models = dmp.models_from_vllm(VLLM_SERVICES, "10.0.0.5", "https", keys)
    assert all(m["endpoint_url"].startswith("https://10.0.0.5:") for m in models)
    assert dmp.credentials_for(models[0], "fleet-key")["api_key"] == "own-key-123"
    assert dmp.credentials_for(models[1], "fleet-key")["api_key"] == "fleet-key"
