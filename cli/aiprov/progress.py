"""Everything aiprov draws on the terminal with rich: live progress and recaps."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from aiprov.plan import SAFE_FRACTION, GpuPlan, HostPlan
from aiprov.problems import Problem
from aiprov.runner import RunResult, RunState

if TYPE_CHECKING:  # doctor loads Ansible's inventory code: only when it runs
    from aiprov.doctor import HostReport

_STATUS_STYLE = {
    "waiting": "dim",
    "running": "cyan",
    "done": "green",
    "failed": "bold red",
    "unreachable": "bold magenta",
}


def _host_table(state: RunState, title: str, live: bool) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("host", no_wrap=True)
    table.add_column("status")
    if live:
        table.add_column("current task", overflow="ellipsis", max_width=60)
    for column in ("ok", "changed", "failed", "unreachable", "skipped"):
        table.add_column(column, justify="right")
    table.add_column("time", justify="right")
    for host in sorted(state.hosts.values(), key=lambda h: h.name):
        status = host.status
        if host.reboot_required and status == "done":
            status = "reboot required"
        row = [host.name, Text(status, style=_STATUS_STYLE.get(host.status, "yellow"))]
        if live:
            row.append(host.task)
        row += [
            str(host.ok),
            _count(host.changed, "yellow"),
            _count(host.failed, "red"),
            _count(host.unreachable, "magenta"),
            str(host.skipped),
            f"{host.duration:.0f}s",
        ]
        table.add_row(*row)
    return table


def _count(value: int, style: str) -> Text:
    return Text(str(value), style=style if value else "")


class LiveProgress:
    """A live per-host table, redrawn on each event."""

    def __init__(self, console: Console, title: str):
        self.console = console
        self.title = title
        self._live = Live(console=console, refresh_per_second=4, transient=True)

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(*exc)

    def update(self, state: RunState) -> None:
        header = Text(f"{state.play} > {state.task}" if state.play else "starting…", style="bold")
        self._live.update(Group(header, _host_table(state, self.title, live=True)))


def recap(console: Console, result: RunResult) -> None:
    """The end-of-run summary: a table per host and each failure's message."""
    state = result.state
    for change in state.changes:
        console.rule(f"{change.host} · {change.task}", style="yellow")
        console.print(Text(change.text), soft_wrap=True)
    if state.hosts:
        console.print(_host_table(state, "Recap", live=False))
    for failure in state.failures:
        kind = "UNREACHABLE" if failure.unreachable else "FAILED"
        console.print(
            Text.assemble(
                (f"{kind} ", "bold red"),
                (failure.host, "bold"),
                f" · {failure.task}\n    {failure.message}",
            )
        )
    rebooting = [h.name for h in state.hosts.values() if h.reboot_required]
    if rebooting:
        console.print(
            f"[yellow]reboot required:[/] {', '.join(sorted(rebooting))} "
            "(the driver install waits until these hosts are rebooted)"
        )
    console.print(f"run artifacts: {result.artifacts}")


def problems(console: Console, found: Iterable[Problem]) -> None:
    for problem in found:
        style = "red" if problem.severity == "error" else "yellow"
        console.print(Text(str(problem), style=style), soft_wrap=True, highlight=False)


# ---- aiprov plan -------------------------------------------------------------

_PLAN_COLORS = [
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "red",
    "bright_cyan",
    "bright_magenta",
]
_BAR_WIDTH = 50


def _gib(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def _ranges(indexes: list[int]) -> str:
    """GPU indexes as 0-3,6."""
    runs: list[list[int]] = []
    for index in indexes:
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)


def _plan_table(host: HostPlan) -> Table:
    table = Table(
        caption="GiB per GPU; 1 seq: the KV cache one max-model-len sequence needs",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("service", no_wrap=True)
    table.add_column("model", overflow="fold", min_width=14)
    for column in ("GPUs", "util"):
        table.add_column(column, no_wrap=True)
    for column in ("weights", "share", "KV", "1 seq", "tokens"):
        table.add_column(column, justify="right", no_wrap=True)
    for i, sp in enumerate(host.services):
        s = sp.service
        color = _PLAN_COLORS[i % len(_PLAN_COLORS)]
        table.add_row(
            Text(s.name, style=color),
            s.model,
            _ranges(s.gpus)
            + f" tp{s.tensor_parallel_size}"
            + (f"pp{s.pipeline_parallel_size}" if s.pipeline_parallel_size > 1 else ""),
            f"{s.gpu_memory_utilization:g}",
            _gib(sp.weights_per_gpu_gib),
            _gib(sp.share_gib),
            _gib(sp.kv_cache_gib),
            _gib(sp.kv_needed_gib),
            "-" if sp.kv_tokens is None else f"{sp.kv_tokens / 1000:.0f}k",
        )
    return table


def _gpu_bar(host: HostPlan, gpu: GpuPlan, widest: float) -> Text:
    """One GPU as a stacked bar: █ weights, ▒ activations, ░ KV cache, ▪ CUDA context."""
    colors = {
        sp.service.name: _PLAN_COLORS[i % len(_PLAN_COLORS)] for i, sp in enumerate(host.services)
    }
    scale = _BAR_WIDTH / widest if widest else 0
    prefix = f"GPU {gpu.index:<2} "
    bar = Text(prefix)
    used_cells = 0
    for share in gpu.shares:
        # Shares of other stacks (MinerU) are not in host.services: give them the next colors.
        color = colors.setdefault(share.service, _PLAN_COLORS[len(colors) % len(_PLAN_COLORS)])
        pieces = [(share.weights_gib, "█"), (share.reserve_gib, "▒"), (share.kv_cache_gib, "░")]
        end = used_cells + round(share.share_gib * scale)
        for size, char in pieces:
            cells = min(round((size or 0) * scale), end - used_cells)
            bar.append(char * cells, style=color)
            used_cells += cells
        bar.append("░" * (end - used_cells), style=color)
        used_cells = end
        cells = max(1, round(share.context_gib * scale))
        bar.append("▪" * cells, style="dim")
        used_cells += cells
    free_cells = round(gpu.total_gib * scale) - used_cells
    if free_cells > 0:
        bar.append("·" * free_cells, style="dim")
    if gpu.free_gib < 0:
        left, right = bar.divide([len(prefix) + round(gpu.total_gib * scale)])
        bar = Text.assemble(left, ("┃", "bold red"), right)
    bar.pad_right(len(prefix) + _BAR_WIDTH + 1 - len(bar))  # line the labels up
    over = gpu.free_gib < 0 or gpu.fraction > SAFE_FRACTION
    bar.append(
        f" {gpu.total_gib - gpu.free_gib:5.1f}/{gpu.total_gib:g} GiB  Σ {gpu.fraction:.2f}",
        style="bold red" if over else "",
    )
    return bar


def plan(console: Console, plans: list[HostPlan]) -> None:
    """The plan as a table per host and a stacked bar per GPU."""
    for host in plans:
        memory = f" {host.gpu_memory_gib:g} GiB" if host.gpu_memory_gib else ""
        console.print(
            Text(f"{host.host}: {host.gpu_count} × {host.gpu_family or '?'}{memory}", style="bold")
        )
        if host.services:
            console.print(_plan_table(host))
        # An over-subscribed GPU widens the host's scale; ┃ marks where its card ends.
        widest = max((max(g.total_gib, g.total_gib - g.free_gib) for g in host.gpus), default=0)
        for gpu in host.gpus:
            console.print(_gpu_bar(host, gpu, widest), soft_wrap=True)
        if host.gpus:
            legend = Text("█ weights  ▒ activations  ░ KV cache  ", style="dim")
            legend.append("▪ CUDA context  · free", style="dim")
            console.print(legend)
        console.print()


def doctor(console: Console, reports: list[HostReport]) -> None:
    """One table per host: what it has, then what it lacks against the inventory."""
    for report in reports:
        table = Table(title=report.host, title_justify="left", show_header=False, box=box.SIMPLE)
        table.add_column("what", style="dim", no_wrap=True)
        table.add_column("found")
        if report.error:
            table.add_row("error", Text(report.error, style="bold red"))
            console.print(table)
            continue
        os_name = report.os.get("pretty_name") or report.os.get("id") or "?"
        table.add_row("OS", f"{os_name}, kernel {report.kernel or '?'}")
        secure_boot = {True: "on", False: "off", None: "no EFI / unknown"}[report.secure_boot]
        table.add_row("Secure Boot", secure_boot)
        table.add_row("nouveau", "loaded" if report.nouveau_loaded else "not loaded")
        driver = report.driver.get("version") or "none loaded"
        if report.driver.get("kernel_module"):
            driver += f" ({report.driver['kernel_module']} kernel module)"
        table.add_row("driver", driver)
        for gpu in report.gpus:
            persistence = {True: "persistence on", False: "persistence off", None: ""}
            memory = f"{gpu.memory_mib} MiB" if gpu.memory_mib is not None else "? MiB"
            table.add_row(
                f"GPU {gpu.index}",
                f"{gpu.name}, {memory}, {gpu.bus_id}, {persistence[gpu.persistence_mode]}",
            )
        if report.nvswitches:
            fabric = report.fabricmanager or "not installed"
            table.add_row("NVSwitch", f"{len(report.nvswitches)}, fabric manager {fabric}")
        cuda = report.cuda_toolkit
        toolkit = f"{cuda['version']} ({cuda['path']})" if cuda.get("version") else "no nvcc"
        table.add_row("CUDA toolkit", toolkit)
        for gap in report.missing:
            table.add_row(Text("missing", style="bold red"), gap)
        if not report.missing:
            table.add_row(Text("ok", style="green"), "matches the inventory")
        console.print(table)
