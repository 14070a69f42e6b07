"""The click layer: help, version, init, validate's exit codes and output."""

import pytest
from click.testing import CliRunner

from aiprov import __version__, paths, profiles
from aiprov.cli import main

EXAMPLES = sorted(p.name for p in paths.profiles_dir().iterdir() if (p / "hosts.yml").exists())


def commands(group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if hasattr(command, "commands"):
            yield from commands(command, (*prefix, name))


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("command", list(commands(main)), ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output


def test_profiles_cover_the_guides_layouts():
    assert {"l20-8x", "a10-4x", "a100-8x", "qwen3-32b-2x", "sandbox"} <= set(profiles.names())


@pytest.mark.parametrize("profile", EXAMPLES)
def test_init_writes_an_inventory_that_validates(tmp_path, profile):
    target = tmp_path / "fleet"
    runner = CliRunner()
    result = runner.invoke(main, ["init", str(target), "--profile", profile])
    assert result.exit_code == 0, result.output
    assert (target / "hosts.yml").exists()
    result = runner.invoke(main, ["validate", "-i", str(target)])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output


def test_init_refuses_to_overwrite(tmp_path):
    (tmp_path / "keep.yml").write_text("mine\n")
    result = CliRunner().invoke(main, ["init", str(tmp_path), "--profile", "sandbox"])
    assert result.exit_code == 1
    assert "not empty" in result.output
    assert (tmp_path / "keep.yml").read_text() == "mine\n"


def test_init_unknown_profile(tmp_path):
    result = CliRunner().invoke(main, ["init", str(tmp_path / "x"), "--profile", "h100-16x"])
    assert result.exit_code == 1
    assert "unknown profile 'h100-16x'" in result.output


def test_validate_reports_file_key_message_and_exits_4(tmp_path):
    (tmp_path / "hosts.yml").write_text("all:\n  children:\n    l20:\n      hosts:\n        g1:\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "l20.yml").write_text("base_limits_nofile: many\n")
    result = CliRunner().invoke(main, ["validate", "-i", str(tmp_path)])
    assert result.exit_code == 4
    assert f"{tmp_path}/group_vars/l20.yml: base_limits_nofile: " in result.output
    assert "Traceback" not in result.output


def test_bootstrap_on_a_missing_inventory_is_bad_input(tmp_path):
    result = CliRunner().invoke(main, ["bootstrap", "-i", str(tmp_path / "nope")])
    assert result.exit_code == 4
    assert "no such file" in result.output
