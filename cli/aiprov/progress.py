"""Everything aiprov draws on the terminal with rich: live progress and recaps."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from aiprov.plan import SAFE_FRACTION, GpuPlan, HostPlan
from aiprov.problems import Problem
from aiprov.runner import RunResult, RunState, TaskResult

if TYPE_CHECKING:  # doctor and discover load Ansible's inventory code: only when they run
    from aiprov.discover import Result as DiscoverResult
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


def _is_log(console: Console) -> bool:
    """Output nobody watches being redrawn: a file, a pipe, a CI log, a dumb terminal.

    rich's Live draws nothing there until the end, and a console without a
    terminal is 80 columns wide.
    """
    return not console.is_interactive


def _print_whole(console: Console, table: Table) -> None:
    """A table at its natural width in a log, where there is no right edge to cut it at."""
    if _is_log(console):
        table.width = Measurement.get(console, console.options.update_width(10_000), table).maximum
        console.print(table, crop=False)
    else:
        console.print(table)


_RESULT_STYLE = {
    "ok": "green",
    "changed": "yellow",
    "failed": "bold red",
    "ignored": "red",
    "unreachable": "bold magenta",
    "skipped": "cyan",
}
HEARTBEAT_S = 30.0


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _result_line(result: TaskResult) -> Text:
    """One finished task: `changed     host1  base : Install packages (3.2s)`."""
    line = Text.assemble(
        (f"{result.status:<11}", _RESULT_STYLE.get(result.status, "")),
        f" {result.host}  {result.task} ({result.duration:.1f}s)",
    )
    if result.message:
        line.append(" — " + " ".join(result.message.split()))
    return line


class LiveProgress:
    """Progress while the playbook runs.

    On a terminal: a live per-host table, redrawn on each event. In a log: one
    line per play and per finished task and host, and a heartbeat line naming
    what still runs when nothing was printed for `heartbeat` seconds.
    """

    def __init__(self, console: Console, title: str, heartbeat: float = HEARTBEAT_S):
        self.console = console
        self.title = title
        self.heartbeat = heartbeat
        drawn = not _is_log(console)
        self._live = Live(console=console, refresh_per_second=4, transient=True) if drawn else None
        self._lock = threading.Lock()  # the heartbeat prints from its own thread
        self._stop = threading.Event()
        self._beats = threading.Thread(target=self._beat, name="aiprov-heartbeat", daemon=True)
        self._begun = self._last_line = time.monotonic()
        self._plays_shown = self._results_shown = 0
        self._running: list[tuple[str, str, float]] = []  # (host, task, task started)
        self._task = ""

    def __enter__(self) -> LiveProgress:
        self._begun = self._last_line = time.monotonic()
        if self._live:
            self._live.__enter__()
        else:
            self._beats.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._live.__exit__(*exc)
        else:
            self._stop.set()
            self._beats.join()

    def update(self, state: RunState) -> None:
        if self._live:
            self._draw(self._live, state)
        else:
            self._log(state)

    def _draw(self, live: Live, state: RunState) -> None:
        header = Text(f"{state.play} > {state.task}" if state.play else "starting…", style="bold")
        live.update(Group(header, _host_table(state, self.title, live=True)))

    def _log(self, state: RunState) -> None:
        with self._lock:
            for play in state.plays[self._plays_shown :]:
                self._line(Text(f"PLAY {play}", style="bold"))
            for result in state.results[self._results_shown :]:
                self._line(_result_line(result))
            self._plays_shown, self._results_shown = len(state.plays), len(state.results)
            self._running = [
                (h.name, h.task, h.task_started)
                for h in state.hosts.values()
                if h.task_started is not None
            ]
            self._task = state.task

    def _line(self, text: Text) -> None:
        now = time.monotonic()
        stamp = f"{self.console.get_datetime():%H:%M:%S} +{_elapsed(now - self._begun)} "
        self.console.print(Text(stamp, style="dim") + text, soft_wrap=True, highlight=False)
        self._last_line = now

    def _beat(self) -> None:
        while not self._stop.wait(max(0.0, self._last_line + self.heartbeat - time.monotonic())):
            with self._lock:
                if time.monotonic() - self._last_line >= self.heartbeat:
                    self._line(self._still_running())

    def _still_running(self) -> Text:
        """`… still running: base : Install packages (41s) on host1, host2`"""
        now = time.monotonic()
        tasks: dict[str, list[tuple[str, float]]] = {}
        for host, task, started in self._running:
            tasks.setdefault(task, []).append((host, now - started))
        running = [
            f"{task} ({max(s for _, s in hosts):.0f}s) on {_some(sorted(h for h, _ in hosts))}"
            for task, hosts in tasks.items()
        ]
        waiting = self._task or "Ansible to start"
        return Text("… still running: " + ("; ".join(running) or f"waiting for {waiting}"))


def _some(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def recap(console: Console, result: RunResult) -> None:
    """The end-of-run summary: a table per host and each failure's message."""
    state = result.state
    for change in state.changes:
        console.rule(f"{change.host} · {change.task}", style="yellow")
        console.print(Text(change.text), soft_wrap=True)
    if state.hosts:
        _print_whole(console, _host_table(state, "Recap", live=False))
    for failure in state.failures:
        kind = "UNREACHABLE" if failure.unreachable else "FAILED"
        console.print(
            Text.assemble(
                (f"{kind} ", "bold red"),
                (failure.host, "bold"),
                f" · {failure.task}\n    {failure.message}",
            ),
            soft_wrap=True,
        )
    rebooting = [h.name for h in state.hosts.values() if h.reboot_required]
    if rebooting:
        console.print(
            f"[yellow]reboot required:[/] {', '.join(sorted(rebooting))} "
            "(the driver install waits until these hosts are rebooted)",
            soft_wrap=True,
        )
    console.print(Text(f"run artifacts: {result.artifacts}"), soft_wrap=True)


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
        name = s.name
        if sp.node_rank is not None:  # a multi-node service: the stages on this host
            stages = "-".join(dict.fromkeys(str(x + 1) for x in (sp.stages[0], sp.stages[-1])))
            name += f" stage {stages}/{s.pipeline_parallel_size}"
        table.add_row(
            Text(name, style=color),
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


def discovered(console: Console, result: DiscoverResult) -> None:
    """`aiprov init --discover`: each host as found and its plan, or why it was left out;
    the files written; validate's verdict on them."""
    for found in result.found:
        if found.problem:
            console.print(Text(f"{found.host}: left out: {found.problem}", style="bold red"),
                          soft_wrap=True)  # fmt: skip
            continue
        model = found.model
        name = model.name if model else "?"
        console.print(
            Text(
                f"{found.host}: group {found.family}, {found.count} x {name}, "
                f"{found.memory_mib} MiB ({found.memory_gib:g} GiB, {found.memory_source}), "
                f"{found.nvswitches} NVSwitch(es), driver {found.driver or 'none loaded'}",
                style="bold",
            ),
            soft_wrap=True,
        )
        for note in found.notes + result.left_out.get(found.host, []):
            console.print(Text(f"  note: {note}", style="yellow"), soft_wrap=True)
    for path in result.written:
        console.print(Text(f"wrote {path}"), soft_wrap=True)
    if not result.written:
        console.print(Text("nothing written: no host could be placed", style="bold red"))
        return
    problems(console, result.problems)
    if not [p for p in result.problems if p.severity == "error"]:
        console.print(Text("the written inventory passes aiprov validate", style="green"))


def _num(value: float | None, fmt: str = "{:g}", none: str = "-") -> str:
    return none if value is None else fmt.format(value)


def status(console: Console, endpoints: list, readings: list) -> None:
    """`aiprov status`: one row per vLLM service of the fleet."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("host", "service", "state", "model"):
        table.add_column(column, no_wrap=True)
    for column in ("running", "waiting", "KV %", "p50 s", "p95 s", "over", "GPU GiB"):
        table.add_column(column, justify="right", no_wrap=True)
    for endpoint, r in zip(endpoints, readings, strict=True):
        state = Text("up", style="green") if r.up else Text(f"down ({r.error})", style="bold red")
        gpu = (
            f"{_num(r.gpu_used_gib, '{:.1f}', '?')}/{endpoint.planned_gib:.1f}"
            if endpoint.planned_gib
            else _num(r.gpu_used_gib, "{:.1f}")
        )
        table.add_row(
            endpoint.host,
            endpoint.service,
            state,
            r.model or endpoint.served_name,
            _num(r.running, "{:.0f}"),
            _num(r.waiting, "{:.0f}"),
            _num(r.kv_cache_pct, "{:.1f}"),
            _num(r.p50_s, "{:.2f}"),
            _num(r.p95_s, "{:.2f}"),
            r.window or "-" if r.up else "-",
            gpu,
        )
    _print_whole(console, table)
    down = sum(not r.up for r in readings)
    summary = f"{len(readings) - down}/{len(readings)} services up"
    sources = sorted({r.source for r in readings})
    if sources:
        named = {"prometheus": "Prometheus", "engine": "the engines' /metrics"}
        summary += f" (read from {' and '.join(named.get(s, s) for s in sources)})"
    console.print(Text(summary, style="bold red" if down else "green"))


def check(console: Console, results: list) -> None:
    """`aiprov check`: each service's targets, measured, met or missed."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("host", "service", "load", "target"):
        table.add_column(column, no_wrap=True)
    for column in ("limit", "measured"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    for r in results:
        e, w = r.endpoint, r.workload
        load = f"{w.endpoint} c={w.concurrency} n={w.requests}"
        if r.error:
            table.add_row(e.host, e.service, load, "-", "-", "-", Text(r.error, style="bold red"))
            continue
        for v in r.verdicts:
            sign = "<=" if v.bound == "max" else ">="
            table.add_row(
                e.host,
                e.service,
                load,
                v.target,
                f"{sign} {v.limit:g}",
                "-" if v.measured is None else f"{v.measured:.4g}",
                Text("ok", style="green") if v.ok else Text("MISSED", style="bold red"),
            )
    _print_whole(console, table)
    failed = sum(not r.ok for r in results)
    line = f"{len(results) - failed}/{len(results)} services met their SLO"
    console.print(Text(line, style="bold red" if failed else "green"))
