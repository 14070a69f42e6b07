"""Run a playbook through ansible-runner's Python API and follow its events.

Pure logic: no click, no rich. The CLI passes callbacks for progress and
cancellation; progress.py draws what RunState holds.
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import ansible_mitogen
import ansible_runner
import yaml

from aiprov import inventory, paths, validate, vault  # inventory: before Ansible's settings
from aiprov.problems import InputError, Problem
from aiprov.vault import VaultOptions

# aiprov's exit codes, the same for every command (README.md, `aiprov --help`).
EXIT_OK = 0
EXIT_ERROR = 1  # this machine could not do it: podman, a local file, Ansible before any host
EXIT_HOST_FAILED = 2
EXIT_HOST_UNREACHABLE = 3
EXIT_BAD_INPUT = 4  # bad input or usage: refused before anything was touched
EXIT_CANCELLED = 130  # Ctrl-C

# ansible-playbook's own exit status, when it stopped before its play recap:
# 4 is its parser error, 5 a bad option, 99 Ctrl-C; anything else is an error.
_ANSIBLE_EXIT = {2: EXIT_HOST_FAILED, 4: EXIT_BAD_INPUT, 5: EXIT_BAD_INPUT, 99: EXIT_CANCELLED}


# The playbooks' first task (playbooks/action_plugins/aiprov_validate.py).
PREFLIGHT_TASK = "Validate the inventory with aiprov's rules"


def ansible_exit_code(rc: int | None) -> int:
    """ansible-playbook's exit status (no play recap came) in aiprov's scheme."""
    return _ANSIBLE_EXIT.get(rc, EXIT_ERROR)


@dataclass
class HostProgress:
    name: str
    task: str = ""
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    started: float | None = None
    finished: float | None = None
    task_started: float | None = None  # None between tasks
    reboot_required: bool = False

    @property
    def duration(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        if self.finished is not None:
            return "done"
        return "running" if self.started is not None else "waiting"


@dataclass
class TaskResult:
    """One task finished on one host."""

    host: str
    task: str
    status: str  # ok, changed, failed, ignored, unreachable or skipped
    duration: float  # seconds since the host started the task
    message: str = ""


@dataclass
class Failure:
    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass
class Change:
    """A change Ansible reported with a diff (--diff), as Ansible rendered it."""

    host: str
    task: str
    text: str


@dataclass
class RunState:
    """What the events told us so far."""

    hosts: dict[str, HostProgress] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    results: list[TaskResult] = field(default_factory=list)
    plays: list[str] = field(default_factory=list)  # every play started, in order
    play: str = ""
    task: str = ""
    stats_seen: bool = False

    def host(self, name: str) -> HostProgress:
        if name not in self.hosts:
            self.hosts[name] = HostProgress(name)
        return self.hosts[name]

    def handle(self, event: dict[str, Any]) -> None:
        """Update the state from one ansible-runner job event."""
        kind = event.get("event", "")
        data = event.get("event_data", {}) or {}
        now = time.monotonic()
        if kind == "playbook_on_play_start":
            self.play = data.get("play", "")
            self.plays.append(self.play)
        elif kind == "playbook_on_task_start":
            self.task = _task_name(data)
        elif kind == "runner_on_start":
            host = self.host(data.get("host", "?"))
            host.task = _task_name(data)
            host.task_started = now
            if host.started is None:
                host.started = now
        elif kind in _RESULT_EVENTS:
            self._result(kind, data, now)
            self._diff(event, data)
        elif kind == "playbook_on_stats":
            self._stats(data, now)

    def _result(self, kind: str, data: dict[str, Any], now: float) -> None:
        host = self.host(data.get("host", "?"))
        if host.started is None:
            host.started = now
        task = _task_name(data)
        duration = now - host.task_started if host.task_started is not None else 0.0
        host.task_started = None
        res = data.get("res", {}) or {}
        if isinstance(res, dict) and res.get("ansible_facts", {}).get("aiprov_reboot_required"):
            host.reboot_required = True
        message = ""
        if kind == "runner_on_ok":
            host.ok += 1
            host.changed += 1 if res.get("changed") else 0
            status = "changed" if res.get("changed") else "ok"
        elif kind == "runner_on_skipped":
            host.skipped += 1
            status = "skipped"
        elif kind == "runner_on_failed" and data.get("ignore_errors"):
            host.ignored += 1
            status, message = "ignored", _message(res)
        elif kind == "runner_on_failed":
            host.failed += 1
            status, message = "failed", _message(res)
            self.failures.append(Failure(host.name, task, message))
        else:  # runner_on_unreachable
            host.unreachable += 1
            status, message = "unreachable", _message(res)
            self.failures.append(Failure(host.name, task, message, unreachable=True))
        self.results.append(TaskResult(host.name, task, status, duration, message))

    def _diff(self, event: dict[str, Any], data: dict[str, Any]) -> None:
        res = data.get("res") or {}
        has_diff = isinstance(res, dict) and (
            res.get("diff")
            or any(isinstance(item, dict) and item.get("diff") for item in res.get("results", []))
        )
        if has_diff and res.get("changed") and event.get("stdout"):
            self.changes.append(Change(data.get("host", "?"), _task_name(data), event["stdout"]))

    def _stats(self, data: dict[str, Any], now: float) -> None:
        """The play recap is the authority on counts."""
        self.stats_seen = True
        for attr, key in _STATS_KEYS.items():
            for name, count in (data.get(key) or {}).items():
                setattr(self.host(name), attr, count)
        for host in self.hosts.values():
            host.finished = host.finished or now
            host.task = ""
            host.task_started = None

    def exit_code(self) -> int:
        if any(h.unreachable for h in self.hosts.values()):
            return EXIT_HOST_UNREACHABLE
        if any(h.failed for h in self.hosts.values()):
            return EXIT_HOST_FAILED
        return EXIT_OK


_RESULT_EVENTS = {"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"}
_STATS_KEYS = {
    "ok": "ok",
    "changed": "changed",
    "failed": "failures",
    "unreachable": "dark",
    "skipped": "skipped",
    "rescued": "rescued",
    "ignored": "ignored",
}


def _task_name(data: dict[str, Any]) -> str:
    """A task as Ansible names it in its output: "role : task" inside a role."""
    task = data.get("task") or ""
    role = data.get("role")
    return f"{role} : {task}" if role and task else task


def _message(res: Any) -> str:
    if not isinstance(res, dict):
        return str(res)
    parts = [str(res.get("msg", "")).strip()]
    stderr = str(res.get("stderr", "") or "").strip()
    if stderr and stderr not in parts[0]:
        parts.append(stderr.splitlines()[-1])
    return " | ".join(p for p in parts if p) or json.dumps(res)[:500]


@dataclass
class RunOptions:
    inventory: str
    playbook: str = "bootstrap"
    limit: str | None = None
    tags: str | None = None
    skip_tags: str | None = None
    check: bool = False
    diff: bool = False
    extra_vars: list[str] = field(default_factory=list)
    forks: int | None = None
    verbosity: int = 0
    mitogen: bool = True
    vault: VaultOptions = field(default_factory=VaultOptions)


@dataclass
class RunResult:
    rc: int
    state: RunState
    artifacts: Path
    status: str


def runs_dir() -> Path:
    """Where per-run artifacts are kept (AIPROV_RUNS_DIR, else the XDG state dir)."""
    if os.environ.get("AIPROV_RUNS_DIR"):
        return Path(os.environ["AIPROV_RUNS_DIR"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "aiprov" / "runs"


def parse_extra_vars(items: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Split -e arguments into inline variables and @FILE references.

    Inline values (KEY=VALUE, or a YAML/JSON mapping) may hold secrets: they go
    to Ansible through a private temporary file in RAM, removed once Ansible has
    read it, never through argv or the run's artifacts. @FILE arguments are passed on by path.
    """
    inline: dict[str, Any] = {}
    files: list[str] = []
    for item in items:
        if item.startswith("@"):
            path = Path(item[1:]).expanduser()
            _check_vars_file(path)
            files.append(str(path.resolve()))
        elif item.lstrip().startswith("{"):
            try:
                value = yaml.safe_load(item)
            except yaml.YAMLError as error:
                raise InputError([Problem("-e", item[:40], _yaml_problem(error))]) from None
            if not isinstance(value, dict):
                raise InputError([Problem("-e", item[:40], "expected a mapping")])
            inline.update(value)
        else:
            key, sep, value = item.partition("=")
            if not sep or not key.strip().isidentifier():
                raise InputError([Problem("-e", item[:40], "expected KEY=VALUE or @FILE")])
            inline[key.strip()] = value
    return inline, files


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's error in one line: what is wrong and where."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return f"invalid YAML: {problem}" + (f" (column {mark.column + 1})" if mark else "")


def _check_vars_file(path: Path) -> None:
    """An -e @FILE must hold a mapping, as ansible-playbook will read it.

    A Vault-encrypted file is left to check(), which has the vault passwords.
    """
    from ansible.errors import AnsibleError
    from ansible.parsing.dataloader import DataLoader

    def bad(message: str) -> InputError:
        return InputError([Problem(str(path), "(extra vars)", message)])

    if not path.exists():
        raise bad("no such file")
    if not path.is_file():
        raise bad("not a file")
    try:
        if path.read_bytes().startswith(b"$ANSIBLE_VAULT;"):
            return
        data = DataLoader().load_from_file(str(path))
    except OSError as error:
        raise bad(error.strerror or str(error)) from None
    except AnsibleError as error:
        raise bad(" ".join(str(error.message).split())) from None
    if not isinstance(data, Mapping):
        raise bad(f"expected a mapping of variables, the file holds {_kind(data)}")


def _kind(data: Any) -> str:
    if data is None:
        return "nothing"
    if isinstance(data, str):
        return "a string"
    return "a list" if isinstance(data, list) else f"a {type(data).__name__}"


def check(options: RunOptions) -> None:
    """Refuse a run's bad input before anything runs (run calls it); raises InputError.

    The inventory is loaded with Ansible's machinery (never contacting a host),
    --limit must match one of its hosts, and -e must be KEY=VALUE, a mapping or
    an @FILE holding one.
    """
    if options.forks is not None and options.forks < 1:
        raise InputError([Problem("--forks", str(options.forks), "must be at least 1")])
    inline, var_files = parse_extra_vars(options.extra_vars)
    _check_encrypted_vars_files(var_files, options.vault)
    check_tags(options)
    extra_vars = _extra_vars(inline, var_files, options.vault)
    loaded = inventory.load(options.inventory, extra_vars=extra_vars, vault_options=options.vault)
    if options.limit:
        limit_hosts(options.inventory, options.limit, options.vault)
    # The rules the playbook's preflight would run (it skips them: AIPROV_VALIDATED).
    errors = validate.errors(validate.validate(loaded))
    if errors:
        raise InputError(errors)


def _extra_vars(inline: dict[str, Any], var_files: list[str], vault_options: VaultOptions):
    """The -e values as ansible-playbook will see them: the inline ones, then each file."""
    from ansible.parsing.dataloader import DataLoader

    loader = DataLoader()
    loader.set_vault_secrets(vault.secrets(vault_options))
    found = dict(inline)
    for path in var_files:
        found.update(loader.load_from_file(path, trusted_as_template=True))
    return found


# Tags ansible-playbook gives a meaning of its own.
_SPECIAL_TAGS = {"all", "always", "never", "tagged", "untagged"}


def playbook_tags(playbook: Path) -> set[str]:
    """The tags a playbook's plays and roles carry (each role is tagged with its name)."""
    tags = set(_SPECIAL_TAGS)
    for play in yaml.safe_load(playbook.read_text()) or []:
        tags.update(play.get("tags") or [])
        for role in play.get("roles") or []:
            tags.update(role.get("tags") or [] if isinstance(role, dict) else [])
    return tags


def check_tags(options: RunOptions) -> None:
    """--tags and --skip-tags name tags of the playbook: a typo would run, or skip, nothing."""
    playbook = paths.playbook(options.playbook)
    known = playbook_tags(playbook)
    problems = []
    for option, value in (("--tags", options.tags), ("--skip-tags", options.skip_tags)):
        for tag in filter(None, (t.strip() for t in (value or "").split(","))):
            if tag in known:
                continue
            hint = [t for t in sorted(known) if t.startswith(tag)] or difflib.get_close_matches(
                tag, sorted(known), n=1
            )
            message = f"'{tag}' is not a tag of {playbook.name}" + (
                f"; did you mean '{hint[0]}'?" if hint else ""
            )
            message += f" (tags: {', '.join(sorted(known - _SPECIAL_TAGS))})"
            problems.append(Problem(option, tag, message))
    if problems:
        raise InputError(problems)


def _check_encrypted_vars_files(var_files: list[str], vault_options: VaultOptions) -> None:
    """An -e @FILE encrypted with Ansible Vault must open with the vault passwords given."""
    found = vault.secrets(vault_options)
    for path in var_files:
        if vault.is_encrypted(path) and not vault.decrypts(path, found):
            raise InputError([Problem(path, "(extra vars)", vault.failure_message(bool(found)))])


def limit_hosts(
    inventory_path: str, limit: str, vault_options: VaultOptions | None = None
) -> list[str]:
    """The hosts that --limit selects, by Ansible's own pattern rules; InputError if none."""
    from unittest import mock

    from ansible import constants
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    sources = [str(paths.families_inventory()), str(Path(inventory_path).resolve())]
    # ansible-playbook warns about each part of the pattern that matches nothing;
    # here only "nothing at all" matters, and it is said once below.
    mismatch = "error" if constants.HOST_PATTERN_MISMATCH == "error" else "ignore"
    loader = DataLoader()
    loader.set_vault_secrets(vault.secrets(vault_options or VaultOptions()))
    try:
        with mock.patch.object(constants, "HOST_PATTERN_MISMATCH", mismatch):
            manager = InventoryManager(loader=loader, sources=sources)
            manager.subset(limit)
            hosts = [host.name for host in manager.get_hosts()]
    except AnsibleError as error:
        problem = inventory._explain(error, inventory_path)
        raise InputError([Problem(problem.file, "--limit", problem.message)]) from None
    if not hosts:
        raise InputError(
            [Problem(inventory_path, "--limit", f"'{limit}' matches no host of the inventory")]
        )
    return hosts


def _environment() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "ANSIBLE_ROLES_PATH": str(paths.roles_dir()),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_PIPELINING": "True",
        # Facts once per host and run, not once per play: every play of
        # bootstrap.yml gathers them (tags or not), which on a converged fleet
        # cost more than the roles' own tasks (docs/fleet-bench.md).
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s",
        "ANSIBLE_INTERPRETER_PYTHON": "auto_silent",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml",
        "ANSIBLE_NOCOLOR": "True",
        # check() ran the playbooks' preflight rules; the preflight play skips them.
        "AIPROV_VALIDATED": "1",
        # aiprov asks for vault passwords itself, once (vault_args).
        "ANSIBLE_ASK_VAULT_PASS": "False",
        # The podman connection to sandbox hosts needs aiprov's podman settings.
        "CONTAINERS_CONF": os.environ.get(
            "CONTAINERS_CONF", str(paths.data_dir() / "containers.conf")
        ),
    }


def _mitogen_environment() -> dict[str, str]:
    """Run tasks through Mitogen's strategy.

    Over SSH it keeps one Python interpreter per host for the whole run instead
    of starting one per task: a converged host then spends about a fifth of the
    CPU it did (docs/fleet-bench.md, run 5).
    Connections Mitogen does not handle (the sandbox's podman) run as before.
    """
    strategies = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return {
        "ANSIBLE_STRATEGY_PLUGINS": str(strategies),
        "ANSIBLE_STRATEGY": "mitogen_linear",
    }


def run(
    options: RunOptions,
    on_event: Callable[[RunState], None] = lambda state: None,
    cancelled: Callable[[], bool] = lambda: False,
    run_dir: Path | None = None,
) -> RunResult:
    """Run the playbook; call on_event after each job event; honour cancellation.

    Bad input raises InputError first (check), before anything is written or run.
    """
    playbook = paths.playbook(options.playbook)
    check(options)
    inline, var_files = parse_extra_vars(options.extra_vars)
    run_dir = run_dir or runs_dir() / f"{datetime.now():%Y%m%d-%H%M%S}-{options.playbook}"
    run_dir.mkdir(parents=True, exist_ok=True)
    state = RunState()

    with tempfile.TemporaryDirectory(prefix="aiprov-", dir=_memory_dir()) as private:

        def handle(event: dict[str, Any]) -> bool:
            if event.get("event") == "playbook_on_start":
                # Ansible has read the extra vars and vault passwords by now:
                # a run killed from here on leaves no secret behind.
                for secret in Path(private).iterdir():
                    secret.unlink()
            if not state.hosts and not state.play:
                _scrub_command_file(run_dir / "artifacts" / "run" / "command")
            state.handle(event)
            on_event(state)
            return True  # keep the event on disk (it carries no extra vars)

        cmdline = vault_args(options.vault, Path(private))
        if inline:
            secret_file = _private_file(Path(private) / "extra-vars.json", json.dumps(inline))
            cmdline += ["-e", f"@{secret_file}"]
        for path in var_files:
            cmdline += ["-e", f"@{path}"]
        if options.check:
            cmdline.append("--check")
        if options.diff:
            cmdline.append("--diff")
        kwargs: dict[str, Any] = {
            "private_data_dir": str(run_dir),
            "ident": "run",
            "playbook": str(playbook),
            "inventory": [str(paths.families_inventory()), str(Path(options.inventory).resolve())],
            "envvars": _environment() | (_mitogen_environment() if options.mitogen else {}),
            "suppress_env_files": True,
            "quiet": True,
            "event_handler": handle,
            "cancel_callback": cancelled,
            "verbosity": options.verbosity or None,
            "cmdline": shlex.join(cmdline) or None,
        }
        for key in ("limit", "tags", "skip_tags", "forks"):
            if getattr(options, key):
                kwargs[key] = getattr(options, key)
        runner = ansible_runner.run(**kwargs)
    _scrub_command_file(run_dir / "artifacts" / "run" / "command")

    if runner.status == "canceled":
        rc = EXIT_CANCELLED
    elif any(f.task.endswith(PREFLIGHT_TASK) for f in state.failures):
        rc = EXIT_BAD_INPUT  # refused before any host was touched
    elif state.stats_seen:
        rc = state.exit_code()
    else:
        rc = ansible_exit_code(runner.rc)
    return RunResult(
        rc=rc, state=state, artifacts=run_dir / "artifacts" / "run", status=runner.status
    )


def _memory_dir() -> str | None:
    """Where secrets for Ansible wait to be read: RAM (/dev/shm), never a disk, if the
    machine has it, so not even a run killed before Ansible read them leaves one on disk."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def _private_file(path: Path, text: str) -> Path:
    """A file only this user can read, for a secret; its directory is deleted after the run."""
    path.touch(mode=0o600)
    path.write_text(text)
    return path


def vault_args(options: VaultOptions, private: Path) -> list[str]:
    """ansible-playbook's vault options: password files and scripts by path, and each
    password aiprov prompted for in a private file under `private`, never in argv."""
    args: list[str] = []
    for vault_id in options.vault_ids:
        args += ["--vault-id", vault_id]
    for path in options.password_files:
        args += ["--vault-password-file", path]
    for number, (label, password) in enumerate(options.prompted):
        secret_file = _private_file(private / f"vault-password-{number}", password)
        args += ["--vault-id", f"{label}@{secret_file}"]
    return args


def _scrub_command_file(path: Path) -> None:
    """ansible-runner records the whole process environment next to the command.

    The environment may hold tokens (HF_TOKEN, ...): keep only what aiprov set.
    """
    if not path.exists():
        return
    record = json.loads(path.read_text())
    ours = set(_environment()) | {k for k in record.get("env", {}) if k.startswith("ANSIBLE_")}
    record["env"] = {k: v for k, v in record.get("env", {}).items() if k in ours}
    path.write_text(json.dumps(record))


def stdout_tail(result: RunResult, lines: int = 30) -> str:
    """The end of Ansible's own output, for errors that happen before any play."""
    stdout = result.artifacts / "stdout"
    if not stdout.exists():
        return ""
    return "\n".join(stdout.read_text(errors="replace").splitlines()[-lines:])
