"""The load generator behind `aiprov check`: NVIDIA's AIPerf (`aiperf profile`).

Why AIPerf (docs in README, "aiprov check"): it drives chat, completions,
embeddings and rerank (Cohere's /v2/rerank, which vLLM serves) at a fixed
concurrency and request count with synthetic prompts of a given length; it
reads the key from an environment variable named in its YAML configuration
(the key never reaches a command line or a file) and redacts it in what it
exports; it sizes prompts with any local or hub tokenizer (aiprov points it at the
model's repo on the fleet's own hub mirror) and `use_server_token_count`
takes the token counts from vLLM's own usage fields; it installs without
torch (GuideLLM 0.8.1 pulls torch and CUDA, `vllm bench serve` the whole
engine).

This module builds the configuration (pure), runs aiperf as a subprocess and
turns its JSON export (profile_export_aiperf.json) into the metrics aiprov.slo
judges.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aiprov.slo import Workload

KEY_ENV = "AIPROV_CHECK_API_KEY"
VERSION = "0.13.0"
# aiprov's endpoint names → aiperf's endpoint types.
ENDPOINT_TYPES = {
    "chat": "chat",
    "completions": "completions",
    "embeddings": "embeddings",
    "rerank": "cohere_rankings",
}
STREAMING = {"chat", "completions"}
EXPORT = "profile_export_aiperf.json"


class LoadgenError(RuntimeError):
    pass


@dataclass(frozen=True)
class Tokenizer:
    """What sizes the prompts: a local directory or a Hugging Face repo (with
    the hub mirror it comes from), else aiperf's builtin tiktoken encoding
    (which tiktoken downloads once: set TIKTOKEN_CACHE_DIR offline)."""

    name: str = "builtin"
    revision: str | None = None
    hf_endpoint: str | None = None

    def config(self) -> dict[str, Any]:
        found: dict[str, Any] = {"name": self.name}
        if self.revision:
            found["revision"] = self.revision
        return found

    def env(self) -> dict[str, str]:
        return {"HF_ENDPOINT": self.hf_endpoint} if self.hf_endpoint else {}


def executable() -> str:
    """aiperf: $AIPROV_AIPERF, else the one scripts/setup.sh installs in
    .venv/loadgen (its own environment: its pins stay out of aiprov's), else PATH."""
    if os.environ.get("AIPROV_AIPERF"):
        return os.environ["AIPROV_AIPERF"]
    beside = Path(sys.prefix) / "loadgen" / "bin" / "aiperf"
    if beside.is_file():
        return str(beside)
    found = shutil.which("aiperf")
    if not found:
        raise LoadgenError(
            f"aiperf is not installed: `python -m venv .venv/loadgen && "
            f".venv/loadgen/bin/pip install aiperf=={VERSION}` (scripts/setup.sh does it), "
            "or set AIPROV_AIPERF"
        )
    return found


TOKENIZER_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken", "vocab*", "merges*"]
_FETCH = """
import sys
from huggingface_hub import snapshot_download
print(snapshot_download(sys.argv[1], revision=sys.argv[2] or None, cache_dir=sys.argv[3],
                        allow_patterns=sys.argv[4:]))
"""


def tokenizer_cache() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "aiprov" / "tokenizers"


def local_tokenizer(tokenizer: Tokenizer, log: Path) -> Tokenizer:
    """A hub tokenizer fetched once into aiprov's cache (only its small files,
    through the fleet's mirror, with the load generator's own huggingface_hub)
    and named by its directory: transformers 5 also asks the hub for files
    that mirrors such as Olah do not list, a local directory it does not."""
    if not tokenizer.hf_endpoint or Path(tokenizer.name).is_dir():
        return tokenizer
    python = Path(executable()).parent / "python"
    command = [str(python), "-c", _FETCH, tokenizer.name, tokenizer.revision or ""]
    command += [str(tokenizer_cache()), *TOKENIZER_FILES]
    env = {**os.environ, **tokenizer.env()}
    with log.open("a") as handle:
        try:
            done = subprocess.run(
                command, env=env, stdout=subprocess.PIPE, stderr=handle, text=True, timeout=600
            )
        except subprocess.TimeoutExpired:
            raise LoadgenError(f"fetching the tokenizer {tokenizer.name} timed out") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not Path(lines[-1]).is_dir():
        raise LoadgenError(
            f"could not fetch the tokenizer {tokenizer.name} from {tokenizer.hf_endpoint} "
            f"(log: {log}); set the service's slo.tokenizer to a local directory"
        )
    return Tokenizer(lines[-1])


def config(
    url: str,
    model: str,
    work: Workload,
    artifacts: Path,
    tokenizer: Tokenizer,
    seed: int = 42,
) -> dict:
    """aiperf's YAML configuration (schema 2.0) for one service; the key is
    `${AIPROV_CHECK_API_KEY}`, which aiperf reads from its environment."""
    streaming = work.endpoint in STREAMING
    prompts: dict[str, Any] = {"isl": {"mean": work.input_tokens, "stddev": 0}}
    if streaming:
        prompts["osl"] = {"mean": work.output_tokens, "stddev": 0}
    endpoint: dict[str, Any] = {
        "url": url,
        "type": ENDPOINT_TYPES[work.endpoint],
        "apiKey": "${" + KEY_ENV + "}",
        "streaming": streaming,
        "timeout": 600.0,
    }
    if streaming:
        endpoint["useServerTokenCount"] = True
        # vLLM stops at max_tokens only when told to ignore EOS: the lengths asked for
        endpoint["extra"] = {"ignore_eos": True}
    return {
        "schemaVersion": "2.0",
        "randomSeed": seed,
        "benchmark": {
            "model": model,
            "endpoint": endpoint,
            "tokenizer": tokenizer.config(),
            "dataset": {"type": "synthetic", "entries": max(work.requests, 10), "prompts": prompts},
            "phases": {
                "type": "concurrency",
                "concurrency": work.concurrency,
                "requests": work.requests,
            },
            "artifacts": {"dir": str(artifacts)},
        },
    }


def run(
    url: str,
    model: str,
    key: str,
    work: Workload,
    artifacts: Path,
    tokenizer: Tokenizer,
    timeout: float = 1800,
) -> dict[str, Any]:
    """Run aiperf against one service; its summary export, parsed. The key
    reaches aiperf only through its environment."""
    artifacts.mkdir(parents=True, exist_ok=True)
    tokenizer = local_tokenizer(tokenizer, artifacts / "tokenizer.log")
    config_file = artifacts / "aiperf.yaml"
    settings = config(url, model, work, artifacts, tokenizer)
    config_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    env = {**os.environ, **tokenizer.env(), KEY_ENV: key}
    command = [executable(), "profile", "--config", str(config_file), "--ui-type", "none"]
    with (artifacts / "aiperf.log").open("w") as log:
        try:
            done = subprocess.run(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise LoadgenError(f"aiperf ran past {timeout:.0f} s (log: {log.name})") from None
    exports = sorted(artifacts.rglob(EXPORT))
    if done.returncode != 0 or not exports:
        raise LoadgenError(
            f"aiperf exited {done.returncode} without {EXPORT} (log: {artifacts / 'aiperf.log'})"
        )
    return json.loads(exports[-1].read_text())


def _stat(export: Mapping[str, Any], metric: str, stat: str) -> float | None:
    value = export.get(metric)
    if isinstance(value, Mapping) and isinstance(value.get(stat), (int, float)):
        return float(value[stat])
    return None


def _ms(export: Mapping[str, Any], metric: str, stat: str) -> float | None:
    value = _stat(export, metric, stat)
    if value is None:
        return None
    unit = str(export[metric].get("unit", "ms"))
    return value * {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1000.0, "sec": 1000.0}.get(unit, 1.0)


def measured(export: Mapping[str, Any]) -> dict[str, float | None]:
    """aiperf's summary as the metrics aiprov.slo names (ms, per second, a share)."""
    good = _stat(export, "request_count", "avg") or 0.0
    failed = _stat(export, "error_request_count", "avg")
    if failed is None:  # absent when none failed; error_summary counts them too
        summary = export.get("error_summary") or []
        failed = float(sum(e.get("count", 0) for e in summary if isinstance(e, Mapping)))
    sent = good + failed
    return {
        "ttft_p95_ms": _ms(export, "time_to_first_token", "p95"),
        "e2e_p95_ms": _ms(export, "request_latency", "p95"),
        "e2e_p50_ms": _ms(export, "request_latency", "p50"),
        "e2e_avg_ms": _ms(export, "request_latency", "avg"),
        "output_tokens_per_s": _stat(export, "output_token_throughput", "avg"),
        "requests_per_s": _stat(export, "request_throughput", "avg"),
        "requests": sent,
        "error_rate": (failed / sent) if sent else None,
    }
