"""Progress in a log (a file, a pipe, CI): a line per result, a heartbeat, whole recaps."""

import re
import time
from datetime import datetime
from io import StringIO
from pathlib import Path

from rich.console import Console

from aiprov import progress, runner


def event(kind, **data):
    return {"event": kind, "event_data": data}


def log_console(**kwargs) -> Console:
    """What aiprov's console is under nohup or in CI: no terminal, 80 columns."""
    return Console(
        file=StringIO(),
        force_terminal=False,
        width=80,
        get_datetime=lambda: datetime(2025, 1, 2, 12, 3, 4),
        **kwargs,
    )


def feed(live, state, *events):
    for item in events:
        state.handle(item)
        live.update(state)


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_a_log_gets_one_line_per_play_and_per_finished_task(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(time, "monotonic", clock)
    console = log_console()
    state = runner.RunState()
    with progress.LiveProgress(console, "bootstrap", heartbeat=3600) as live:
        feed(live, state, event("playbook_on_play_start", play="Base system"))
        feed(live, state, event("playbook_on_task_start", role="base", task="Install packages"))
        for host in ("host1", "host2", "host3", "host4"):
            feed(
                live,
                state,
                event("runner_on_start", host=host, role="base", task="Install packages"),
            )
        clock.now += 3.2
        feed(
            live,
            state,
            event("runner_on_ok", host="host1", role="base", task="Install packages", res={}),
            event(
                "runner_on_ok",
                host="host2",
                role="base",
                task="Install packages",
                res={"changed": True},
            ),
        )
        clock.now += 80
        feed(
            live,
            state,
            event(
                "runner_on_failed",
                host="host3",
                role="base",
                task="Install packages",
                res={"msg": "No package matching 'nope'\nis available", "stderr": "E: no nope"},
            ),
            event(
                "runner_on_unreachable",
                host="host4",
                role="base",
                task="Install packages",
                res={"msg": "ssh: no route"},
            ),
            event("runner_on_skipped", host="host1", task="Reboot"),
        )
    assert console.file.getvalue().splitlines() == [
        "12:03:04 +0:00 PLAY Base system",
        "12:03:04 +0:03 ok          host1  base : Install packages (3.2s)",
        "12:03:04 +0:03 changed     host2  base : Install packages (3.2s)",
        "12:03:04 +1:23 failed      host3  base : Install packages (83.2s)"
        " — No package matching 'nope' is available | E: no nope",
        "12:03:04 +1:23 unreachable host4  base : Install packages (83.2s) — ssh: no route",
        "12:03:04 +1:23 skipped     host1  Reboot (0.0s)",
    ]


def test_a_heartbeat_names_what_still_runs_when_nothing_finishes():
    console = log_console()
    state = runner.RunState()
    with progress.LiveProgress(console, "bootstrap", heartbeat=0.05) as live:
        time.sleep(0.12)  # before any event: Ansible is starting
        feed(
            live,
            state,
            event("playbook_on_play_start", play="vLLM"),
            event("runner_on_start", host="gpu2", role="vllm_service", task="Wait for health"),
            event("runner_on_start", host="gpu1", role="vllm_service", task="Wait for health"),
        )
        time.sleep(0.3)  # no events at all: only the heartbeat's own timer can print
        feed(live, state, event("runner_on_ok", host="gpu1", task="Wait for health", res={}))
        printed = len(console.file.getvalue().splitlines())
    time.sleep(0.15)
    assert not live._beats.is_alive()
    lines = console.file.getvalue().splitlines()
    assert len(lines) == printed  # the heartbeat stopped with the run
    play = lines.index("12:03:04 +0:00 PLAY vLLM")
    waiting = "12:03:04 +0:00 … still running: waiting for Ansible to start"
    assert play >= 1 and set(lines[:play]) == {waiting}
    running = "12:03:04 +0:00 … still running: vllm_service : Wait for health (0s) on gpu1, gpu2"
    assert len(lines[play + 1 : -1]) >= 3 and set(lines[play + 1 : -1]) == {running}
    assert re.fullmatch(r"12:03:04 \+0:00 ok +gpu1  Wait for health \(0\.\ds\)", lines[-1])


def test_the_heartbeat_waits_a_whole_interval_after_the_last_line():
    console = log_console()
    state = runner.RunState()
    with progress.LiveProgress(console, "bootstrap", heartbeat=0.5) as live:
        for _ in range(5):  # a line every 0.1 s: the heartbeat never has to speak
            feed(live, state, event("runner_on_ok", host="a", task="Loop", res={}))
            time.sleep(0.1)
    assert "still running" not in console.file.getvalue()


def _finished_run(tmp_path: Path) -> runner.RunResult:
    host = "gpu-node-with-a-rather-long-name-17.rack-b.datacenter.example.org"
    task = "vllm_service : Wait until every vLLM service answers on its health endpoint"
    state = runner.RunState()
    for item in (
        event("runner_on_start", host=host, task=task),
        event("runner_on_failed", host=host, task=task, res={"msg": "vLLM is unhealthy " * 12}),
        event(
            "playbook_on_stats",
            ok={host: 123, "b": 5},
            changed={host: 45},
            failures={host: 1},
            dark={"b": 1},
            skipped={host: 67},
        ),
    ):
        state.handle(item)
    artifacts = tmp_path / ("a-deeply-nested-runs-directory/" * 4) / "20250102-120304-bootstrap"
    return runner.RunResult(rc=2, state=state, artifacts=artifacts / "artifacts/run", status="x")


def test_the_recap_in_a_log_is_not_cut_at_80_columns(tmp_path):
    result = _finished_run(tmp_path)
    console = log_console()
    progress.recap(console, result)
    lines = console.file.getvalue().splitlines()
    host = next(iter(result.state.hosts))
    header = next(line for line in lines if "status" in line)
    assert header.split("┃")[1:-1] == [
        f" {name:{'<' if name in ('host', 'status') else '>'}{width}} "
        for name, width in [
            ("host", len(host)),
            ("status", 11),
            ("ok", 3),
            ("changed", 7),
            ("failed", 6),
            ("unreachable", 11),
            ("skipped", 7),
            ("time", 4),
        ]
    ]
    row = next(line for line in lines if host in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == [
        host,
        "failed",
        "123",
        "45",
        "1",
        "0",
        "67",
        "0s",
    ]
    failure = result.state.failures[0]
    assert f"FAILED {host} · {failure.task}" in lines
    assert f"    {failure.message}" in lines
    assert lines[-1] == f"run artifacts: {result.artifacts}"
    assert len(lines[-1]) > 80


def test_the_recap_on_a_terminal_still_fits_the_terminal(tmp_path):
    console = Console(file=StringIO(), force_terminal=True, width=80, record=True)
    progress.recap(console, _finished_run(tmp_path))
    table = [line for line in console.export_text().splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 80 for line in table)


def test_a_terminal_keeps_the_live_table(monkeypatch):
    console = Console(file=StringIO(), force_terminal=True, width=100)
    state = runner.RunState()
    with progress.LiveProgress(console, "bootstrap") as live:
        assert live._live is not None
        feed(live, state, event("runner_on_ok", host="a", task="x", res={}))
    assert not live._beats.is_alive()
    assert "ok          a" not in console.file.getvalue()
