"""RunState follows ansible-runner events; extra vars never reach argv or disk."""

from pathlib import Path

import pytest

from aiprov import runner
from aiprov.problems import InputError


def event(kind, **data):
    return {"event": kind, "event_data": data}


def test_progress_counts_and_failures():
    state = runner.RunState()
    state.handle(event("playbook_on_play_start", play="Base system"))
    state.handle(event("playbook_on_task_start", task="Install packages"))
    state.handle(event("runner_on_start", host="a", task="Install packages"))
    assert state.hosts["a"].status == "running"
    assert state.hosts["a"].task == "Install packages"
    state.handle(event("runner_on_ok", host="a", task="Install packages", res={"changed": True}))
    state.handle(event("runner_on_ok", host="a", task="x", res={"changed": False}))
    state.handle(event("runner_on_skipped", host="a", task="y"))
    state.handle(
        event(
            "runner_on_failed",
            host="b",
            task="Install packages",
            res={"msg": "No package matching 'nope'", "stderr": "E: Unable to locate package nope"},
        )
    )
    state.handle(
        event("runner_on_failed", host="a", task="z", ignore_errors=True, res={"msg": "meh"})
    )
    a, b = state.hosts["a"], state.hosts["b"]
    assert (a.ok, a.changed, a.skipped, a.failed, a.ignored) == (2, 1, 1, 0, 1)
    assert b.status == "failed"
    assert state.failures == [
        runner.Failure(
            "b", "Install packages", "No package matching 'nope' | E: Unable to locate package nope"
        )
    ]
    assert state.exit_code() == runner.EXIT_HOST_FAILED


def test_unreachable_wins_and_stats_are_authoritative():
    state = runner.RunState()
    state.handle(
        event(
            "runner_on_unreachable", host="c", task="Gathering Facts", res={"msg": "ssh: no route"}
        )
    )
    state.handle(
        event(
            "playbook_on_stats",
            ok={"a": 5, "c": 0},
            changed={"a": 2},
            failures={"a": 1},
            dark={"c": 1},
            skipped={"a": 3},
        )
    )
    assert state.stats_seen
    assert state.hosts["a"].failed == 1 and state.hosts["a"].changed == 2
    assert state.hosts["c"].status == "unreachable"
    assert state.failures[0].unreachable
    assert state.exit_code() == runner.EXIT_HOST_UNREACHABLE


def test_clean_run_exits_zero():
    state = runner.RunState()
    state.handle(event("playbook_on_stats", ok={"a": 3}, changed={}, failures={}, dark={}))
    assert state.exit_code() == runner.EXIT_OK
    assert state.hosts["a"].status == "done"


def test_reboot_required_fact_is_noticed():
    state = runner.RunState()
    res = {"changed": False, "ansible_facts": {"aiprov_reboot_required": True}}
    state.handle(event("runner_on_ok", host="a", task="Check nouveau", res=res))
    assert state.hosts["a"].reboot_required


def test_extra_vars_inline_and_files(tmp_path):
    varfile = tmp_path / "vars.yml"
    varfile.write_text("a: 1\n")
    inline, files = runner.parse_extra_vars(["token=s3cr=t", '{"nested": {"x": 1}}', f"@{varfile}"])
    assert inline == {"token": "s3cr=t", "nested": {"x": 1}}
    assert files == [str(varfile)]


@pytest.mark.parametrize("bad", ["novalue", "=x", "@/does/not/exist", "{oops: [1"])
def test_extra_vars_rejects_bad_input(bad):
    with pytest.raises(InputError):
        runner.parse_extra_vars([bad])


def test_diffs_are_kept_for_the_recap():
    state = runner.RunState()
    diff = {"before": "a\n", "after": "b\n", "before_header": "/etc/x"}
    rendered = "--- before: /etc/x\n+++ after: /etc/x\n-a\n+b\n\nchanged: [h]"
    state.handle(
        {
            "event": "runner_on_ok",
            "stdout": rendered,
            "event_data": {"host": "h", "task": "Write x", "res": {"changed": True, "diff": diff}},
        }
    )
    state.handle(event("runner_on_ok", host="h", task="Quiet", res={"changed": True}))
    assert state.changes == [runner.Change("h", "Write x", rendered)]


def test_mitogen_strategy_plugin_is_where_ansible_is_told_to_look():
    env = runner._mitogen_environment()
    plugin = Path(env["ANSIBLE_STRATEGY_PLUGINS"]) / f"{env['ANSIBLE_STRATEGY']}.py"
    assert plugin.is_file(), plugin


def test_each_finished_task_is_recorded_with_its_role_and_duration(monkeypatch):
    clock = iter([100.0, 100.0, 103.5, 104.0, 104.0, 110.0])
    monkeypatch.setattr(runner.time, "monotonic", lambda: next(clock))
    state = runner.RunState()
    state.handle(event("playbook_on_play_start", play="Base system"))
    state.handle(event("runner_on_start", host="a", role="base", task="Install packages"))
    assert state.hosts["a"].task == "base : Install packages"
    assert state.hosts["a"].task_started == 100.0
    state.handle(event("runner_on_ok", host="a", role="base", task="Install packages", res={}))
    assert state.hosts["a"].task_started is None
    state.handle(event("runner_on_ok", host="b", task="Gathering Facts", res={"changed": True}))
    state.handle(event("runner_on_start", host="a", task="Check"))
    state.handle(
        event("runner_on_failed", host="a", task="Check", ignore_errors=True, res={"msg": "no"})
    )
    assert state.plays == ["Base system"]
    assert state.results == [
        runner.TaskResult("a", "base : Install packages", "ok", 3.5),
        runner.TaskResult("b", "Gathering Facts", "changed", 0.0),
        runner.TaskResult("a", "Check", "ignored", 6.0, "no"),
    ]


def test_secrets_wait_in_ram_and_are_gone_once_ansible_has_read_them(tmp_path, monkeypatch):
    """A run killed at any point leaves no inline -e value on disk."""
    import shlex
    from types import SimpleNamespace

    import ansible_runner

    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    gpu01:\n")
    seen = {}

    def run(**kwargs):
        args = shlex.split(kwargs["cmdline"])
        path = Path(args[args.index("-e") + 1][1:])
        seen["dir"], seen["text"] = path.parent, path.read_text()
        kwargs["event_handler"]({"event": "verbose", "event_data": {}})
        seen["after_a_warning"] = path.exists()
        kwargs["event_handler"]({"event": "playbook_on_start", "event_data": {}})
        seen["after_start"] = path.exists()
        return SimpleNamespace(status="successful", rc=0)

    monkeypatch.setattr(ansible_runner, "run", run)
    monkeypatch.setenv("AIPROV_RUNS_DIR", str(tmp_path / "runs"))
    options = runner.RunOptions(
        inventory=str(tmp_path / "hosts.yml"), playbook="bootstrap",
        extra_vars=["vllm_service_api_key=sk-aiprov-0461"],
    )  # fmt: skip
    runner.run(options)
    assert "sk-aiprov-0461" in seen["text"]
    assert seen["dir"].parent == Path("/dev/shm")  # RAM, not a disk
    assert seen["after_a_warning"] and not seen["after_start"]
    assert not seen["dir"].exists()
