"""Golden files of `aiprov plan --format json` for every example inventory, and
`aiprov validate` passing on each.

Refresh the golden files after an intended change with:

    AIPROV_UPDATE_GOLDEN=1 pytest tests/test_plan_golden.py
"""

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiprov import paths
from aiprov.cli import main

GOLDEN = Path(__file__).parent / "golden" / "plan"
EXAMPLES = sorted(p for p in paths.profiles_dir().iterdir() if (p / "hosts.yml").is_file())


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_plan_json_matches_golden(example):
    result = CliRunner().invoke(main, ["plan", "-i", str(example), "--format", "json"])
    assert result.exit_code == 0, result.output + result.stderr
    data = json.loads(result.stdout)
    golden = GOLDEN / f"{example.name}.json"
    if os.environ.get("AIPROV_UPDATE_GOLDEN"):
        golden.write_text(json.dumps(data, indent=2) + "\n")
    assert golden.is_file(), f"no golden file: run AIPROV_UPDATE_GOLDEN=1 pytest {__file__}"
    assert data == json.loads(golden.read_text())


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_inventory_validates(example):
    result = CliRunner().invoke(main, ["validate", "-i", str(example)])
    assert result.exit_code == 0, result.output + result.stderr


@pytest.mark.parametrize("fmt", ["table", "svg"])
def test_plan_renders_every_example(tmp_path, fmt):
    for example in EXAMPLES:
        out = tmp_path / f"{example.name}.{fmt}"
        result = CliRunner().invoke(
            main, ["plan", "-i", str(example), "--format", fmt, "-o", str(out)]
        )
        assert result.exit_code == 0, result.output + result.stderr
        text = out.read_text()
        if fmt == "svg":
            assert text.startswith("<svg") and text.rstrip().endswith("</svg>")
        assert "GPU 0" in text or "no GPUs" in text or example.name == "sandbox"


def test_plan_of_an_unknown_host_is_bad_input():
    example = paths.profiles_dir() / "a10-4x"
    result = CliRunner().invoke(main, ["plan", "-i", str(example), "--host", "nope"])
    assert result.exit_code == 4
    assert "--host: the inventory has no host 'nope'" in result.stderr


def test_plan_exits_4_on_an_oversubscribed_gpu():
    broken = Path(__file__).parent / "broken" / "guide-fractions-past-the-card"
    result = CliRunner().invoke(main, ["plan", "-i", str(broken)])
    assert result.exit_code == 4
    assert "GPU 3: gpu_memory_utilization adds up to 1.90" in " ".join(result.stderr.split())
    assert "GPU 3" in result.stdout  # the picture is still drawn


def test_plan_refuses_an_inventory_the_schema_rejects():
    broken = Path(__file__).parent / "broken" / "wrong-type-gpu-count"
    result = CliRunner().invoke(main, ["plan", "-i", str(broken), "--format", "json"])
    assert result.exit_code == 4
    assert "aiprov_gpu_count: argument 'aiprov_gpu_count' is of type str" in result.stderr
    assert result.stdout == ""
