"""Per-service acceptance targets (`slo:` in a vllm_service_services entry):
what `aiprov check` drives and what the result must meet.

The schema (roles/vllm_service/meta/argument_specs.yml) refuses unknown keys
and values of the wrong type; `check_slo` refuses the impossible ones. `evaluate`
compares one measured run (aiprov.loadgen's summary) with the targets: pure
functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiprov import plan
from aiprov.inventory import Inventory
from aiprov.plan import SERVICES_KEY
from aiprov.problems import Problem

ENDPOINTS = ("chat", "completions", "embeddings", "rerank")
# Workload: how much load the check drives (integers >= 1).
WORKLOAD = ("concurrency", "requests", "input_tokens", "output_tokens")
# Targets: (measured metric, "max" or "min", unit).
TARGETS: dict[str, tuple[str, str, str]] = {
    "ttft_p95_ms": ("ttft_p95_ms", "max", "ms"),
    "e2e_p95_ms": ("e2e_p95_ms", "max", "ms"),
    "e2e_avg_ms": ("e2e_avg_ms", "max", "ms"),
    "tokens_per_s": ("output_tokens_per_s", "min", "tok/s"),
    "requests_per_s": ("requests_per_s", "min", "req/s"),
    "error_rate": ("error_rate", "max", ""),
}
DEFAULTS = {"concurrency": 1, "input_tokens": 128, "output_tokens": 128, "error_rate": 0.0}
REQUESTS_PER_CONCURRENCY = 10


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numeric(value: Any) -> float | None:
    """`value` as a number where the schema would convert it (3, 2.5, "2.5"), else None."""
    if isinstance(value, bool):
        return None
    if _number(value):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def slo_problems(slo: Any, label: str, file: str) -> list[Problem]:
    """What is impossible in one service's `slo:` (types are the schema's)."""
    if not isinstance(slo, Mapping):
        return [] if slo is None else [Problem(file, f"{label}.slo", "must be a mapping")]
    found = []
    for key, value in slo.items():
        number = _numeric(value)
        where = f"{label}.slo.{key}"
        if key in WORKLOAD:
            if value is not None and (number is None or number != int(number) or number < 1):
                found.append(Problem(file, where, f"{value!r}: must be a whole number >= 1"))
        elif key in TARGETS:
            if value is None:
                continue
            if number is None or not math.isfinite(number):
                found.append(Problem(file, where, f"{value!r}: must be a finite number"))
            elif key == "error_rate" and not 0 <= number <= 1:
                found.append(Problem(file, where, f"{value!r}: a share of requests, 0 to 1"))
            elif key != "error_rate" and number <= 0:
                found.append(Problem(file, where, f"{value!r}: must be above 0"))
        elif key == "endpoint" and value not in ENDPOINTS:
            found.append(Problem(file, where, f"{value!r}: one of {', '.join(ENDPOINTS)}"))
    return found


def check_slo(inventory: Inventory) -> Iterator[Problem]:
    """Every service's `slo:` asks for a possible load and possible targets."""
    default = inventory.sources[-1]
    for host in inventory.hosts:
        for service in plan.parse_services(host.vars.get(SERVICES_KEY)):
            if "slo" in service.raw:
                yield from slo_problems(
                    service.raw["slo"], service.label, service.file("slo", default)
                )


@dataclass(frozen=True)
class Workload:
    endpoint: str
    concurrency: int
    requests: int
    input_tokens: int
    output_tokens: int


def endpoint_of(service: Mapping[str, Any]) -> str:
    slo = service.get("slo") or {}
    if slo.get("endpoint"):
        return str(slo["endpoint"])
    return "embeddings" if service.get("runner") == "pooling" else "chat"


def workload(service: Mapping[str, Any]) -> Workload:
    """The load `aiprov check` drives for a service (its slo with the defaults)."""
    slo = {**DEFAULTS, **{k: v for k, v in (service.get("slo") or {}).items() if v is not None}}
    concurrency = int(slo["concurrency"])
    return Workload(
        endpoint=endpoint_of(service),
        concurrency=concurrency,
        requests=int(slo.get("requests") or REQUESTS_PER_CONCURRENCY * concurrency),
        input_tokens=int(slo["input_tokens"]),
        output_tokens=int(slo["output_tokens"]),
    )


@dataclass(frozen=True)
class Verdict:
    target: str  # the slo key
    metric: str  # the measured metric
    bound: str  # "max" or "min"
    limit: float
    measured: float | None
    unit: str

    @property
    def ok(self) -> bool:
        if self.measured is None:
            return False
        return self.measured <= self.limit if self.bound == "max" else self.measured >= self.limit


def targets(service: Mapping[str, Any]) -> dict[str, float]:
    """The service's targets, error_rate always among them (default 0)."""
    slo = service.get("slo") or {}
    found = {"error_rate": float(DEFAULTS["error_rate"])}
    found.update({k: float(v) for k, v in slo.items() if k in TARGETS and v is not None})
    return found


def evaluate(service: Mapping[str, Any], measured: Mapping[str, float | None]) -> list[Verdict]:
    """Each target of the service against what the run measured (None: not measured,
    which fails: a target that the run cannot show is not met)."""
    verdicts = []
    for key, limit in targets(service).items():
        metric, bound, unit = TARGETS[key]
        value = measured.get(metric)
        verdicts.append(Verdict(key, metric, bound, limit, value, unit))
    return verdicts
