"""The per-service `slo:`: impossible values refused, the workload `aiprov check`
drives, and the judgement of measured numbers against the targets."""

import pytest

from aiprov import slo


def _messages(value):
    return [f"{p.key}: {p.message}" for p in slo.slo_problems(value, "svc[chat]", "f.yml")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"concurrency": 0}, "svc[chat].slo.concurrency: 0: must be a whole number >= 1"),
        ({"requests": 2.5}, "svc[chat].slo.requests: 2.5: must be a whole number >= 1"),
        ({"input_tokens": -1}, "svc[chat].slo.input_tokens: -1: must be a whole number >= 1"),
        ({"e2e_p95_ms": -5}, "svc[chat].slo.e2e_p95_ms: -5: must be above 0"),
        ({"ttft_p95_ms": 0}, "svc[chat].slo.ttft_p95_ms: 0: must be above 0"),
        ({"ttft_p95_ms": "fast"}, "svc[chat].slo.ttft_p95_ms: 'fast': must be a finite number"),
        ({"e2e_p95_ms": float("nan")}, "svc[chat].slo.e2e_p95_ms: nan: must be a finite number"),
        ({"error_rate": 1.5}, "svc[chat].slo.error_rate: 1.5: a share of requests, 0 to 1"),
        ({"error_rate": -0.1}, "svc[chat].slo.error_rate: -0.1: a share of requests, 0 to 1"),
        ({"endpoint": "audio"}, "svc[chat].slo.endpoint: 'audio': one of chat, completions"),
        ("fast", "svc[chat].slo: must be a mapping"),
    ],
)
def test_impossible_values_are_refused(value, expected):
    found = _messages(value)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_possible_values_pass():
    good = {
        "endpoint": "rerank",
        "concurrency": 10,
        "requests": 100,
        "input_tokens": 32,
        "output_tokens": 100,
        "e2e_avg_ms": 1000,
        "e2e_p95_ms": "2000",  # the schema converts it
        "tokens_per_s": 200,
        "error_rate": 0,
    }
    assert _messages(good) == []
    assert _messages(None) == []


def test_workload_defaults_follow_the_runner():
    chat = slo.workload({"name": "chat", "slo": {"concurrency": 4}})
    assert chat == slo.Workload("chat", 4, 40, 128, 128)
    embedding = slo.workload({"name": "e", "runner": "pooling"})
    assert embedding.endpoint == "embeddings" and embedding.concurrency == 1
    rerank = slo.workload({"runner": "pooling", "slo": {"endpoint": "rerank", "requests": 7}})
    assert (rerank.endpoint, rerank.requests) == ("rerank", 7)


def test_evaluate_judges_each_target_and_a_missing_number_fails():
    service = {"slo": {"e2e_p95_ms": 2000, "tokens_per_s": 200, "ttft_p95_ms": 500}}
    measured = {"e2e_p95_ms": 1500.0, "output_tokens_per_s": 150.0, "error_rate": 0.0}
    verdicts = {v.target: v for v in slo.evaluate(service, measured)}
    assert verdicts["e2e_p95_ms"].ok  # 1500 <= 2000
    assert not verdicts["tokens_per_s"].ok  # 150 < 200
    assert not verdicts["ttft_p95_ms"].ok  # not measured
    assert verdicts["error_rate"].ok and verdicts["error_rate"].limit == 0.0  # always judged
