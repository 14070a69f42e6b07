"""`aiprov check`: post-deploy acceptance. Each OpenAI-compatible service
(chat, completions, embeddings, rerank) is driven through the key-checking
front by the load generator (aiprov.loadgen) at the load its `slo:` names, and
judged against its targets (aiprov.slo). Writes report.json and report.svg
with the run's artifacts (aiprov's runs directory, so the secret scan reads
them too).
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiprov import loadgen, runner, slo
from aiprov.inventory import Host, Inventory
from aiprov.plan import SERVICES_KEY
from aiprov.status import Endpoint, endpoints, podman_addresses


@dataclass
class Result:
    endpoint: Endpoint
    workload: slo.Workload
    tokenizer: loadgen.Tokenizer = field(default_factory=loadgen.Tokenizer)
    measured: dict[str, float | None] = field(default_factory=dict)
    verdicts: list[slo.Verdict] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(v.ok for v in self.verdicts)


def tokenizer_for(host: Host, entry: dict[str, Any], render=None) -> loadgen.Tokenizer:
    """The slo's tokenizer, else the model's own: its directory where the
    model is a path that exists here, its Hugging Face repo through the
    fleet's hub mirror (models_hf_endpoint), else aiperf's builtin."""
    given = (entry.get("slo") or {}).get("tokenizer")
    if given:
        return loadgen.Tokenizer(str(given))
    model = str(entry.get("model", ""))
    if model.startswith("/") and Path(model).is_dir():
        return loadgen.Tokenizer(model)
    catalog = host.vars.get("models_catalog") or []
    item = next((m for m in catalog if isinstance(m, dict) and m.get("id") == model), None)
    if item and item.get("hub", "huggingface") == "huggingface" and item.get("repo"):
        endpoint = host.vars.get("models_hf_endpoint", _default_hf_endpoint())
        if render is not None:
            endpoint = render(host, endpoint)
        return loadgen.Tokenizer(str(item["repo"]), item.get("revision"), str(endpoint))
    return loadgen.Tokenizer()


def _default_hf_endpoint() -> str:
    from aiprov.paths import role_defaults

    return str(role_defaults("models").get("models_hf_endpoint") or "https://huggingface.co")


def targets(
    inventory: Inventory, render: Callable[[Host, Any], Any], service: str | None = None
) -> list[tuple[Endpoint, dict[str, Any], loadgen.Tokenizer]]:
    """Each service to check, with its inventory entry and tokenizer (--service:
    that name only)."""
    found = []
    podman = podman_addresses(inventory.hosts)
    for host in inventory.hosts:
        entries = {str(s["name"]): s for s in host.vars.get(SERVICES_KEY) or []}
        for endpoint in endpoints(host, render, podman=podman):
            if service and endpoint.service != service:
                continue
            entry = entries[endpoint.service]
            found.append((endpoint, entry, tokenizer_for(host, entry, render)))
    return found


def judge(endpoint: Endpoint, entry: dict[str, Any], export: dict[str, Any]) -> Result:
    """One service's result from the load generator's export (pure)."""
    measured = loadgen.measured(export)
    verdicts = slo.evaluate(entry, measured)
    return Result(endpoint, slo.workload(entry), measured=measured, verdicts=verdicts)


def run_dir() -> Path:
    return runner.runs_dir() / f"{time.strftime('%Y%m%d-%H%M%S')}-check"


def check_one(
    endpoint: Endpoint, entry: dict[str, Any], tokenizer: loadgen.Tokenizer, artifacts: Path
) -> Result:
    work = slo.workload(entry)
    try:
        export = loadgen.run(
            endpoint.url,
            endpoint.served_name,
            endpoint.key,
            work,
            artifacts / f"{endpoint.host}-{endpoint.service}",
            tokenizer,
        )
    except loadgen.LoadgenError as error:
        return Result(endpoint, work, tokenizer, error=str(error))
    result = judge(endpoint, entry, export)
    result.tokenizer = tokenizer
    return result


def to_json(results: list[Result]) -> dict[str, Any]:
    rows = []
    for r in results:
        rows.append(
            {
                "host": r.endpoint.host,
                "service": r.endpoint.service,
                "model": r.endpoint.served_name,
                "url": r.endpoint.url,
                "workload": asdict(r.workload),
                "tokenizer": r.tokenizer.name,
                "measured": r.measured,
                "targets": [
                    {
                        "target": v.target,
                        "bound": v.bound,
                        "limit": v.limit,
                        "measured": v.measured,
                        "unit": v.unit,
                        "ok": v.ok,
                    }
                    for v in r.verdicts
                ],
                "error": r.error,
                "ok": r.ok,
            }
        )
    return {
        "load_generator": f"aiperf {loadgen.VERSION}",
        "services": rows,
        "passed": all(r.ok for r in results),
    }


def svg(results: list[Result]) -> str:
    """One bar per target, measured against its limit (the limit at 2/3 of the
    bar's room): green when met, red when missed. Written by hand from the
    numbers, as plan_svg does."""
    rows = [(r, v) for r in results for v in r.verdicts] or []
    width, row_h, left, room = 760, 26, 300, 420
    height = 40 + row_h * max(1, len(rows) + len(results))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="10" y="20" font-size="14" font-weight="bold">aiprov check: '
        f"{'passed' if all(r.ok for r in results) else 'FAILED'}</text>",
    ]
    y = 40
    for r in results:
        title = f"{r.endpoint.host} {r.endpoint.service} ({r.endpoint.served_name})"
        detail = r.error or (
            f"{r.workload.endpoint}, concurrency {r.workload.concurrency}, "
            f"{r.workload.requests} requests"
        )
        out.append(
            f'<text x="10" y="{y + 14}" font-weight="bold">{html.escape(title)}</text>'
            f'<text x="{left}" y="{y + 14}" fill="#555">{html.escape(detail[:70])}</text>'
        )
        y += row_h
        for v in r.verdicts:
            scale = room * 2 / 3 / v.limit if v.limit else 0
            value = v.measured or 0.0
            bar = min(room, value * scale) if scale else (room if value else 0)
            color = "#2e7d32" if v.ok else "#c62828"
            shown = "not measured" if v.measured is None else f"{v.measured:.3g} {v.unit}"
            sign = "≤" if v.bound == "max" else "≥"
            limit_x = left + (room * 2 / 3 if scale else 0)
            out.append(
                f'<text x="24" y="{y + 14}">{html.escape(v.target)} {sign} {v.limit:g} '
                f"{html.escape(v.unit)}</text>"
                f'<rect x="{left}" y="{y + 4}" width="{bar:.1f}" height="14" fill="{color}"/>'
                f'<line x1="{limit_x:.1f}" y1="{y}" x2="{limit_x:.1f}" y2="{y + 22}" '
                'stroke="#000" stroke-dasharray="3,2"/>'
                f'<text x="{left + room + 6}" y="{y + 14}">{html.escape(shown)}</text>'
            )
            y += row_h
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_report(results: list[Result], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    report = directory / "report.json"
    report.write_text(json.dumps(to_json(results), indent=2) + "\n")
    plot = directory / "report.svg"
    plot.write_text(svg(results))
    return report, plot


def exit_code(results: list[Result]) -> int:
    """2 when a service missed a target or could not be driven (as a failed host)."""
    return 0 if results and all(r.ok for r in results) else 2
