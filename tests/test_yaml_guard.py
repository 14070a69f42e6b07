"""Alias bombs and huge files are refused before Ansible parses them, quickly."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from aiprov import yaml_guard
from aiprov.cli import main


def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    lines.append(f"base_extra_packages: *a{levels}")
    return "\n".join(lines) + "\n"


def _inventory(tmp_path, host_vars: str | bytes):
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    gpu01:\n")
    (tmp_path / "host_vars").mkdir()
    target = tmp_path / "host_vars" / "gpu01.yml"
    if isinstance(host_vars, bytes):
        target.write_bytes(host_vars)
    else:
        target.write_text(host_vars)
    return target


def test_a_one_kilobyte_alias_bomb_is_refused_at_once(tmp_path):
    target = _inventory(tmp_path, _bomb())
    assert target.stat().st_size < 1024
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["validate", "-i", str(tmp_path)])
    took = time.perf_counter() - started
    assert result.exit_code == 4, result.output
    assert f"{target}: (file): its YAML aliases" in result.output
    assert took < 2.0


def test_a_bomb_in_the_hosts_file_is_refused(tmp_path):
    hosts = tmp_path / "hosts.yml"
    body = "".join("    " + line + "\n" for line in _bomb().splitlines())
    hosts.write_text("all:\n  hosts:\n    gpu01:\n  vars:\n" + body)
    problem = yaml_guard.file_problem(hosts)
    assert problem is not None and "alias bomb" in problem.message


def test_a_huge_vars_file_is_refused_unread(tmp_path):
    target = _inventory(tmp_path, b"")
    with target.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # 50 MB, sparse
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["validate", "-i", str(tmp_path)])
    assert result.exit_code == 4, result.output
    assert f"{target}: (file): 52.4 MB" in " ".join(result.output.split())
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize(
    "text",
    [
        # Anchors and merge keys as people use them: a few nodes added.
        "defaults: &d {port: 8000, gpus: [0]}\n"
        "vllm_like:\n  - {<<: *d, name: a}\n  - {<<: *d, name: b}\n",
        # A '*' inside quotes or a glob is no alias.
        'models_catalog: [{id: x, allow_patterns: ["*.json", "*.safetensors"]}]\n',
        "note: 'a *starred* word'\n",
    ],
)
def test_ordinary_anchors_and_stars_pass(tmp_path, text):
    assert yaml_guard.file_problem(_inventory(tmp_path, text)) is None


def test_the_limit_counts_expansion_not_aliases(tmp_path):
    # 200 aliases of a 10-value list add 2,200 values: fine.
    text = "base: &b [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nuses:\n" + "  - *b\n" * 200
    assert yaml_guard.file_problem(_inventory(tmp_path, text)) is None
    # Three levels of nine add about 16,000 values: fine; five add about 1.3 million.
    target = tmp_path / "host_vars" / "gpu01.yml"
    target.write_text(_bomb(levels=3))
    assert yaml_guard.file_problem(target) is None
    target.write_text(_bomb(levels=5))
    assert "alias bomb" in yaml_guard.file_problem(target).message


def test_files_ansible_reads_are_found(tmp_path):
    (tmp_path / "hosts.yml").write_text("all: {}\n")
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "group_vars" / "all" / "a.yml").write_text("x: 1\n")
    (tmp_path / "README.md").write_text("not read\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("not read\n")
    found = {p.relative_to(tmp_path).as_posix() for p in yaml_guard.inventory_files(tmp_path)}
    assert found == {"hosts.yml", "group_vars/all/a.yml"}
    single = {p.name for p in yaml_guard.inventory_files(tmp_path / "hosts.yml")}
    assert single == {"hosts.yml", "a.yml"}
