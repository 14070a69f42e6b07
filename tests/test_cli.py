"""The click layer: help, version, init, validate's exit codes and output."""

from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from aiprov import __version__, paths, profiles, runner
from aiprov.cli import main


def invoke(args):
    return CliRunner().invoke(main, args, prog_name="aiprov")


EXAMPLES = sorted(p.name for p in paths.profiles_dir().iterdir() if (p / "hosts.yml").exists())


def commands(group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if hasattr(command, "commands"):
            yield from commands(command, (*prefix, name))


def test_version():
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("command", list(commands(main)), ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    result = invoke([*command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output


def test_profiles_cover_the_guides_layouts():
    assert {"l20-8x", "a10-4x", "a100-8x", "qwen3-32b-2x", "sandbox"} <= set(profiles.names())


@pytest.mark.parametrize("profile", EXAMPLES)
def test_init_writes_an_inventory_that_validates(tmp_path, profile):
    target = tmp_path / "fleet"
    result = invoke(["init", str(target), "--profile", profile])
    assert result.exit_code == 0, result.output
    assert (target / "hosts.yml").exists()
    result = invoke(["validate", "-i", str(target)])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output


def test_init_refuses_to_overwrite(tmp_path):
    (tmp_path / "keep.yml").write_text("mine\n")
    result = invoke(["init", str(tmp_path), "--profile", "sandbox"])
    assert_bad_input(
        result, f"aiprov: {tmp_path} is not empty (use --force to overwrite its files)"
    )
    assert (tmp_path / "keep.yml").read_text() == "mine\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.yml"]


def test_init_force_writes_into_a_non_empty_directory(tmp_path):
    (tmp_path / "keep.yml").write_text("mine\n")
    result = invoke(["init", str(tmp_path), "--profile", "sandbox", "--force"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "hosts.yml").exists() and (tmp_path / "keep.yml").exists()


def test_init_unknown_profile(tmp_path):
    result = invoke(["init", str(tmp_path / "x"), "--profile", "h100-16x"])
    assert_bad_input(result, "aiprov: unknown profile 'h100-16x' (choose from ")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_init_onto_an_existing_file(tmp_path, force):
    target = tmp_path / "fleet"
    target.write_text("mine\n")
    result = invoke(["init", str(target), "--profile", "sandbox", *force])
    assert_bad_input(result, f"aiprov: {target} exists and is not a directory")
    assert target.read_text() == "mine\n"


def test_validate_reports_file_key_message_and_exits_4(tmp_path):
    (tmp_path / "hosts.yml").write_text("all:\n  children:\n    l20:\n      hosts:\n        g1:\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "l20.yml").write_text("base_limits_nofile: many\n")
    result = invoke(["validate", "-i", str(tmp_path)])
    assert result.exit_code == 4
    assert f"{tmp_path}/group_vars/l20.yml: base_limits_nofile: " in result.output
    assert "Traceback" not in result.output


def test_bootstrap_on_a_missing_inventory_is_bad_input(tmp_path):
    result = invoke(["bootstrap", "-i", str(tmp_path / "nope")])
    assert_bad_input(result, f"{tmp_path / 'nope'}: (inventory): no such file or directory")


# ---- one exit-code scheme ------------------------------------------------------


def assert_bad_input(result, start: str) -> None:
    """Exit 4, one readable line that starts with `start`, no traceback."""
    assert result.exit_code == runner.EXIT_BAD_INPUT, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(start), lines[0]


def assert_cancelled(result) -> None:
    assert result.exit_code == runner.EXIT_CANCELLED, result.output
    assert "Traceback" not in result.output
    assert "cancelled" in result.output


def test_main_help_documents_the_exit_codes():
    result = invoke(["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for line in (
        "0 ok",
        "1 this machine could not do it",
        "2 a host failed",
        "3 a host was unreachable",
        "4 bad input or usage: refused before anything was touched",
        "130 cancelled with Ctrl-C",
    ):
        assert line in text


def test_the_constants_are_the_documented_codes():
    codes = (
        runner.EXIT_OK,
        runner.EXIT_ERROR,
        runner.EXIT_HOST_FAILED,
        runner.EXIT_HOST_UNREACHABLE,
        runner.EXIT_BAD_INPUT,
        runner.EXIT_CANCELLED,
    )
    assert codes == (0, 1, 2, 3, 4, 130)


@pytest.mark.parametrize(
    ("ansible", "aiprov"),
    [(None, 1), (0, 1), (1, 1), (2, 2), (4, 4), (5, 4), (99, 130), (250, 1), (-15, 1)],
)
def test_ansible_playbooks_own_status_maps_into_the_scheme(ansible, aiprov):
    assert runner.ansible_exit_code(ansible) == aiprov


LEAVES = [c for c in commands(main) if not hasattr(main.get_command(None, c[0]), "commands")]
LEAVES += [c for c in commands(main) if len(c) == 2]


@pytest.mark.parametrize("command", LEAVES, ids=" ".join)
def test_unknown_option_is_usage_error_4_on_every_command(command):
    result = invoke([*command, "--no-such-option"])
    assert_bad_input(result, f"aiprov {' '.join(command)}: No such option '--no-such-option'")
    assert f"(see 'aiprov {' '.join(command)} --help')" in result.output


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--bogus"], "aiprov: No such option '--bogus'"),
        (["frobnicate"], "aiprov: No such command 'frobnicate'"),
        (["models", "frobnicate"], "aiprov models: No such command 'frobnicate'"),
        (["init"], "aiprov init: Missing argument 'DIRECTORY'"),
        (["init", "fleet"], "aiprov init: Missing option '--profile'"),
        (["bootstrap"], "aiprov bootstrap: Missing option '-i' / '--inventory'"),
        (["validate"], "aiprov validate: Missing option '-i' / '--inventory'"),
        (["plan", "-i", "x", "--format", "png"], "aiprov plan: Invalid value for '--format'"),
        (["sandbox", "up", "--os", "win11"], "aiprov sandbox up: Invalid value for '--os'"),
        (["sandbox", "up", "--hosts", "0"], "aiprov sandbox up: Invalid value for '--hosts'"),
        (["bootstrap", "-i", "x", "--forks", "0"], "aiprov bootstrap: Invalid value for '-f'"),
        (["models", "pull", "-i", "x", "-f", "0"], "aiprov models pull: Invalid value for '-f'"),
        (["bootstrap", "-i", "x", "--forks", "many"], "aiprov bootstrap: Invalid value for '-f'"),
        (["init", "a", "--discover", "--hosts-file", "/nonexistent"], "aiprov init: Invalid value"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_usage_errors_exit_4_in_one_line(args, start):
    result = invoke(args)
    assert_bad_input(result, start)


def test_a_group_without_its_subcommand_shows_help_and_exits_4():
    result = invoke(["models"])
    assert result.exit_code == runner.EXIT_BAD_INPUT
    assert "pull" in result.output and "Traceback" not in result.output


@pytest.fixture
def inventory_dir(tmp_path):
    """Two hosts in group l20, one in cpu; nothing is ever contacted."""
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yml").write_text(
        "all:\n  children:\n    l20:\n      hosts:\n        gpu01:\n        gpu02:\n"
        "    cpu:\n      hosts:\n        box01:\n"
    )
    return inv


@pytest.fixture
def runs(monkeypatch, tmp_path):
    """Where run directories go in these tests."""
    path = tmp_path / "runs"
    monkeypatch.setenv("AIPROV_RUNS_DIR", str(path))
    return path


@pytest.fixture
def no_run(monkeypatch, runs):
    """Ansible must not be started, and no run directory may appear."""

    def fail(**kwargs):
        raise AssertionError("a bad input reached ansible-runner")

    monkeypatch.setattr(runner.ansible_runner, "run", fail)
    yield
    assert not runs.exists()


@pytest.fixture
def fake_run(monkeypatch, runs):
    """ansible-runner records its arguments and reports a clean play recap."""
    calls = []

    def run(**kwargs):
        calls.append(kwargs)
        kwargs["event_handler"]({"event": "playbook_on_stats", "event_data": {"ok": {"gpu01": 1}}})
        return SimpleNamespace(status="successful", rc=0)

    monkeypatch.setattr(runner.ansible_runner, "run", run)
    return calls


@pytest.mark.parametrize("command", [["bootstrap"], ["models", "pull"]], ids=" ".join)
@pytest.mark.parametrize("limit", ["gpu03", "nosuchgroup", "l20:&cpu", "a100"])
def test_a_limit_that_matches_no_host_is_refused_before_anything_runs(
    inventory_dir, no_run, command, limit
):
    result = invoke([*command, "-i", str(inventory_dir), "--limit", limit])
    assert_bad_input(
        result, f"{inventory_dir}: --limit: '{limit}' matches no host of the inventory"
    )


def test_a_missing_limit_file_is_bad_input(inventory_dir, no_run, tmp_path):
    missing = tmp_path / "retry.txt"
    result = invoke(["bootstrap", "-i", str(inventory_dir), "-l", f"@{missing}"])
    assert_bad_input(result, "")
    assert "--limit: Unable to find limit file" in result.output


@pytest.mark.parametrize("limit", ["gpu01", "l20", "cpu,gpu02", "gpu01,typo", "l20:!gpu01"])
def test_a_limit_that_matches_runs(inventory_dir, fake_run, limit):
    result = invoke(["bootstrap", "-i", str(inventory_dir), "--limit", limit])
    assert result.exit_code == 0, result.output
    assert [kwargs["limit"] for kwargs in fake_run] == [limit]
    assert "WARNING" not in result.output


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("- a\n- b\n", "expected a mapping of variables, the file holds a list"),
        ("just words\n", "expected a mapping of variables, the file holds a string"),
        ("", "expected a mapping of variables, the file holds nothing"),
        ("a: [1\n", "YAML parsing failed"),
    ],
    ids=["list", "string", "empty", "broken-yaml"],
)
def test_an_extra_vars_file_that_is_not_a_mapping(inventory_dir, no_run, tmp_path, content, says):
    varfile = tmp_path / "vars.yml"
    varfile.write_text(content)
    result = invoke(["bootstrap", "-i", str(inventory_dir), "-e", f"@{varfile}"])
    assert_bad_input(result, f"{varfile}: (extra vars): ")
    assert says in result.output


def test_a_missing_extra_vars_file(inventory_dir, no_run, tmp_path):
    missing = tmp_path / "nope.yml"
    result = invoke(["bootstrap", "-i", str(inventory_dir), "-e", f"@{missing}"])
    assert_bad_input(result, f"{missing}: (extra vars): no such file")


def test_an_extra_vars_directory(inventory_dir, no_run, tmp_path):
    result = invoke(["bootstrap", "-i", str(inventory_dir), "-e", f"@{tmp_path}"])
    assert_bad_input(result, f"{tmp_path}: (extra vars): not a file")


@pytest.mark.parametrize("bad", ["novalue", "=x", "two words=x", "{oops: [1", "{[1, 2]}"])
def test_an_inline_extra_var_that_is_not_key_value(inventory_dir, no_run, bad):
    result = invoke(["models", "pull", "-i", str(inventory_dir), "-e", bad])
    assert_bad_input(result, "-e: ")


def test_good_extra_vars_reach_the_run(inventory_dir, fake_run, tmp_path):
    varfile = tmp_path / "vars.yml"
    varfile.write_text("hf_mirror: http://mirror\n")
    args = ["-e", "token=s3cr=t", "-e", f"@{varfile}", "-e", '{"a": 1}']
    result = invoke(["bootstrap", "-i", str(inventory_dir), *args])
    assert result.exit_code == 0, result.output
    cmdline = fake_run[0]["cmdline"]
    assert f"-e @{varfile}" in cmdline  # a Vault-encrypted one: tests/test_vault.py
    assert "s3cr" not in cmdline


def test_a_broken_inventory_is_refused_before_the_run(tmp_path, no_run):
    (tmp_path / "hosts.yml").write_text("all:\n  hosts: [oops\n")
    result = invoke(["bootstrap", "-i", str(tmp_path)])
    assert result.exit_code == runner.EXIT_BAD_INPUT, result.output
    assert "Traceback" not in result.output


def test_plan_output_into_a_missing_directory(tmp_path):
    out = tmp_path / "nope" / "plan.svg"
    inv = str(paths.profiles_dir() / "l20-8x")
    result = invoke(["plan", "-i", inv, "--format", "svg", "-o", str(out)])
    assert_bad_input(
        result, f"aiprov plan: Invalid value for '-o' / '--output': no such directory: {out.parent}"
    )
    assert not out.parent.exists()


def test_plan_output_onto_a_directory(tmp_path):
    inv = str(paths.profiles_dir() / "l20-8x")
    result = invoke(["plan", "-i", inv, "-o", str(tmp_path)])
    assert_bad_input(
        result, f"aiprov plan: Invalid value for '-o' / '--output': {tmp_path} is a directory"
    )
    assert list(tmp_path.iterdir()) == []


def test_plan_output_into_a_file(tmp_path):
    out = tmp_path / "plan.json"
    inv = str(paths.profiles_dir() / "l20-8x")
    result = invoke(["plan", "-i", inv, "--format", "json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("{")


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_in_validate_exits_130(monkeypatch):
    from aiprov import inventory

    monkeypatch.setattr(inventory, "load", _interrupt)
    result = invoke(["validate", "-i", str(paths.profiles_dir() / "l20-8x")])
    assert_cancelled(result)


def test_ctrl_c_in_plan_exits_130(monkeypatch):
    from aiprov import plan

    monkeypatch.setattr(plan, "plan", _interrupt)
    result = invoke(["plan", "-i", str(paths.profiles_dir() / "l20-8x")])
    assert_cancelled(result)


def test_ctrl_c_in_doctor_exits_130(monkeypatch):
    from aiprov import doctor

    monkeypatch.setattr(doctor, "run_probe", _interrupt)
    result = invoke(["doctor", "-i", str(paths.profiles_dir() / "l20-8x")])
    assert_cancelled(result)


def test_a_local_failure_exits_1_in_one_line(monkeypatch, tmp_path):
    def unwritable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "fleet"))

    monkeypatch.setattr(profiles, "init", unwritable)
    result = invoke(["init", str(tmp_path / "fleet"), "--profile", "sandbox"])
    assert result.exit_code == runner.EXIT_ERROR
    assert result.output.strip() == f"aiprov: [Errno 13] Permission denied: '{tmp_path}/fleet'"


@pytest.mark.parametrize("command", [["bootstrap"], ["models", "pull"]], ids=" ".join)
def test_an_inventory_with_errors_is_refused_before_the_run(tmp_path, no_run, command):
    """The same rules as `aiprov validate`, before Ansible starts (no host touched)."""
    inv = tmp_path / "inv"
    (inv / "host_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  hosts:\n    gpu01:\n")
    (inv / "host_vars" / "gpu01.yml").write_text("vllm_sevice_services: []\n")
    result = invoke([*command, "-i", str(inv)])
    assert_bad_input(result, f"{inv}/host_vars/gpu01.yml: vllm_sevice_services: unknown variable")
    assert "did you mean 'vllm_service_services'?" in result.output


def test_extra_vars_count_in_the_validation(inventory_dir, fake_run):
    """An -e value is checked as the run will see it: over every inventory value."""
    result = invoke(["bootstrap", "-i", str(inventory_dir), "-e", "docker_ce_repo_url=ftp://m"])
    assert result.exit_code == runner.EXIT_BAD_INPUT, result.output
    assert not fake_run
    assert "docker_ce_repo_url: 'ftp://m' has 'ftp://'" in result.output


def test_the_playbook_preflight_is_told_that_aiprov_validated(inventory_dir, fake_run):
    result = invoke(["bootstrap", "-i", str(inventory_dir)])
    assert result.exit_code == 0, result.output
    assert fake_run[0]["envvars"]["AIPROV_VALIDATED"] == "1"


@pytest.mark.parametrize(
    ("command", "option", "tag", "hint"),
    [
        (["bootstrap"], "--tags", "vllm", "did you mean 'vllm_service'?"),
        (["bootstrap"], "--skip-tags", "nvidia-driver", "did you mean 'nvidia_driver'?"),
        (["models", "pull"], "--tags", "docker", "tags: aiprov_validate, models"),
    ],
)
def test_an_unknown_tag_is_refused(inventory_dir, no_run, command, option, tag, hint):
    value = f"base,{tag}" if command == ["bootstrap"] else tag
    result = invoke([*command, "-i", str(inventory_dir), option, value])
    assert_bad_input(result, f"{option}: {tag}: '{tag}' is not a tag of ")
    assert hint in result.output


@pytest.mark.parametrize("tags", ["docker,models", "always", "never", "untagged"])
def test_known_tags_run(inventory_dir, fake_run, tags):
    result = invoke(["bootstrap", "-i", str(inventory_dir), "--tags", tags])
    assert result.exit_code == 0, result.output


def test_a_preflight_failure_in_the_playbook_exits_4(inventory_dir, monkeypatch, runs):
    """Should the playbook's own preflight refuse (a run aiprov could not check), the run
    is bad input: exit 4, not a host failure."""

    def run(**kwargs):
        handle = kwargs["event_handler"]
        task = {"host": "gpu01", "task": runner.PREFLIGHT_TASK, "res": {"msg": "f: k: m"}}
        handle({"event": "runner_on_failed", "event_data": task})
        handle({"event": "playbook_on_stats", "event_data": {"failures": {"gpu01": 1}}})
        return SimpleNamespace(status="failed", rc=2)

    monkeypatch.setattr(runner.ansible_runner, "run", run)
    result = invoke(["bootstrap", "-i", str(inventory_dir)])
    assert result.exit_code == runner.EXIT_BAD_INPUT, result.output
