"""Everything aiprov draws on the terminal with rich: live progress and recaps."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from aiprov.problems import Problem
from aiprov.runner import RunResult, RunState

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
