"""Bad mirror and runtime input is rejected before any host changes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from aiprov import checks_mirrors, validate
from aiprov.cli import main
from aiprov.inventory import Host, Inventory


def _inventory(**host_vars) -> Inventory:
    # A CPU host: the mirror rules do not look at the GPU, and the driver's
    # (checks_cuda) stay out of these lists.
    host_vars = {"aiprov_gpu_family": "cpu", **host_vars}
    return Inventory(sources=["inv.yml"], hosts=[Host("h1", ["gpu"], host_vars)])


def _all(inventory: Inventory) -> list[str]:
    return [str(p) for p in validate.validate(inventory)]


@pytest.mark.parametrize(
    "url",
    [
        "https://pypi.tuna.tsinghua.edu.cn/simple",
        "http://10.88.0.1:38471/simple",
        "https://docker.m.daocloud.io",
    ],
)
def test_http_and_https_mirrors_pass(url):
    assert checks_mirrors.url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://mirror.example/simple", "'ftp://'"),
        ("mirrors.aliyun.com/pypi/simple", "no scheme"),
        ("file:///srv/wheels", "'file://'"),
        ("https:///simple", "names no host"),
        ("https://mirror example/simple", "whitespace"),
    ],
)
def test_bad_mirror_urls_are_explained(url, why):
    assert why in checks_mirrors.url_problem(url)


def test_each_url_variable_is_checked_with_its_index():
    inventory = _inventory(
        python_env_pip_index_url="ftp://mirror.example/simple",
        python_env_pip_extra_index_urls=["https://ok.example/simple", "pypi.example/simple"],
        docker_registry_mirrors=["docker.m.daocloud.io"],
        docker_ce_repo_url="https://mirrors.aliyun.com/docker-ce/linux",
    )
    problems = _all(inventory)
    assert any(p.startswith("inv.yml: python_env_pip_index_url: 'ftp://") for p in problems)
    assert any(
        "python_env_pip_extra_index_urls[1]: 'pypi.example/simple' has no scheme" in p
        for p in problems
    )
    assert any("docker_registry_mirrors[0]:" in p for p in problems)
    assert not any("docker_ce_repo_url" in p for p in problems)
    assert not any("extra_index_urls[0]" in p for p in problems)


def test_empty_and_templated_urls_are_left_to_the_preset_and_ansible():
    inventory = _inventory(
        python_env_pip_index_url="",
        python_env_conda_pkgs_url="{{ my_mirror }}/anaconda/pkgs",
        docker_registry_mirrors=["{{ registry_mirror }}"],
    )
    assert _all(inventory) == []


def test_unknown_preset_is_rejected_by_the_role_spec():
    problems = _all(_inventory(python_env_mirror="bfsu"))
    assert len(problems) == 1
    assert problems[0].startswith("inv.yml: python_env_mirror: ")
    assert "tuna, aliyun, ustc, official" in problems[0]


def test_runtime_without_a_path_is_rejected_by_the_role_spec():
    problems = _all(_inventory(docker_runtimes=[{"name": "kata"}]))
    assert len(problems) == 1
    assert "docker_runtimes" in problems[0] and "path" in problems[0]


def test_default_runtime_must_be_defined():
    problems = _all(_inventory(docker_default_runtime="kata"))
    assert problems == [
        "inv.yml: docker_default_runtime: 'kata' is not a runtime daemon.json defines "
        "(runc, nvidia); add it to docker_runtimes with its path"
    ]
    ok = _inventory(
        docker_default_runtime="kata", docker_runtimes=[{"name": "kata", "path": "/usr/bin/kata"}]
    )
    assert _all(ok) == []
    assert _all(_inventory(docker_default_runtime="nvidia")) == []
    no_nvidia = _inventory(docker_default_runtime="nvidia", docker_nvidia_runtime_enabled=False)
    assert "'nvidia' is not a runtime" in _all(no_nvidia)[0]


def test_miniconda_needs_url_and_checksum():
    problems = _all(_inventory(python_env_miniconda_enabled=True))
    assert any("python_env_miniconda_sha256: Miniconda is enabled" in p for p in problems)
    assert any("python_env_miniconda_url: Miniconda is enabled" in p for p in problems)
    good = _inventory(
        python_env_miniconda_enabled=True,
        python_env_miniconda_url="https://mirrors.tuna.tsinghua.edu.cn/anaconda/miniconda/M.sh",
        python_env_miniconda_sha256="a" * 64,
    )
    assert _all(good) == []


def test_conda_env_needs_miniconda_and_names_are_unique():
    envs = [
        {"name": "asr", "packages": ["funasr"]},
        {"name": "asr", "kind": "conda", "python": "3.11"},
    ]
    problems = _all(_inventory(python_env_venvs=envs))
    assert (
        "inv.yml: python_env_venvs[1].name: 'asr' is defined twice; each environment needs "
        "its own name" in problems
    )
    assert (
        "inv.yml: python_env_venvs[1].kind: a conda environment needs "
        "python_env_miniconda_enabled: true" in problems
    )


def test_unknown_venv_kind_is_rejected_by_the_role_spec():
    problems = _all(_inventory(python_env_venvs=[{"name": "x", "kind": "pipenv"}]))
    assert len(problems) == 1 and "venv, conda" in problems[0]


def test_aiprov_validate_reports_bad_mirrors_from_the_file_that_set_them(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    gpu01:\n      ansible_host: 10.0.0.1\n"
    )
    group_vars = tmp_path / "group_vars" / "all.yml"
    group_vars.write_text(
        "python_env_mirror: bfsu\n"
        "docker_registry_mirrors: [ftp://mirror.example]\n"
        "docker_runtimes: [{name: kata}]\n"
    )
    result = CliRunner().invoke(main, ["validate", "-i", str(tmp_path)])
    assert result.exit_code == 4
    assert "Traceback" not in result.output
    assert f"{group_vars}: python_env_mirror: value of python_env_mirror must be one of" in (
        result.output
    )
    assert f"{group_vars}: docker_registry_mirrors[0]: 'ftp://mirror.example' has 'ftp://'" in (
        result.output
    )
    assert f"{group_vars}: docker_runtimes: missing required arguments: path" in result.output


@pytest.mark.parametrize(
    "url",
    ["ftp://bob:s3cret@mirror/simple", "http://bob:s3cret@ mirror/", "bob:s3cret@mirror/simple",
     "ftp://[bob:s3cret@mirror/"],
)  # fmt: skip
def test_url_problems_never_show_credentials(url):
    problem = checks_mirrors.url_problem(url)
    assert problem and "s3cret" not in problem and "***@" in problem
