"""Prometheus text exposition (what vLLM's /metrics serves), parsed, and the
numbers `aiprov status` shows from it: requests running and waiting, KV-cache
use, and latency quantiles from the request-latency histogram.

A small parser (prometheus_client is no dependency of aiprov): it reads the
sample lines of the text format 0.0.4, `name{label="value",...} value [ts]`,
and skips comments. Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    found = []
    for match in _LABEL.finditer(text):
        value = re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], match.group(2))
        found.append((match.group(1), value))
    return tuple(found)


def parse(text: str) -> list[Sample]:
    """The samples of a Prometheus text page; lines that are not samples are skipped."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        samples.append(Sample(match.group(1), _labels(match.group(2) or ""), value))
    return samples


def total(samples: Iterable[Sample], *names: str) -> float | None:
    """The sum of the first of `names` that is present (over its label sets)."""
    samples = list(samples)
    for name in names:
        values = [s.value for s in samples if s.name == name]
        if values:
            return sum(values)
    return None


def buckets(samples: Iterable[Sample], name: str) -> dict[float, float]:
    """A histogram's cumulative counts by upper bound, summed over label sets."""
    found: dict[float, float] = {}
    for s in samples:
        if s.name == f"{name}_bucket" and s.label("le") is not None:
            bound = float(s.label("le"))  # "+Inf" → inf
            found[bound] = found.get(bound, 0.0) + s.value
    return found


def delta(now: Mapping[float, float], before: Mapping[float, float]) -> dict[float, float]:
    """The histogram of what happened between two scrapes; `now` when the counts
    went down (the engine restarted since)."""
    if any(now.get(b, 0.0) < v for b, v in before.items()):
        return dict(now)
    return {b: v - before.get(b, 0.0) for b, v in now.items()}


def quantile(q: float, histogram: Mapping[float, float]) -> float | None:
    """Prometheus's histogram_quantile: linear within the bucket holding rank q,
    the highest finite bound when it falls in +Inf; None without observations."""
    bounds = sorted(histogram)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    count = histogram[bounds[-1]]
    if count <= 0:
        return None
    rank = q * count
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        cumulative = histogram[bound]
        if cumulative >= rank:
            if math.isinf(bound):
                return previous_bound
            inside = cumulative - previous_count
            if inside <= 0:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / inside
        previous_bound, previous_count = bound, cumulative
    return previous_bound


def model_name(samples: Iterable[Sample]) -> str | None:
    """The served model name vLLM puts on its samples."""
    for s in samples:
        name = s.label("model_name")
        if name:
            return name
    return None


# vLLM's names (V1 engine); the older gpu_cache_usage_perc where a release still has it.
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
LATENCY = "vllm:e2e_request_latency_seconds"
