"""The corpus under tests/broken/: each directory is an inventory with one mistake
(many straight from the guides) and expected.txt, a substring of the message
`aiprov validate` must print (FILE: KEY: message). Each must exit 4 with that
message and no traceback; args.txt, where there is one, adds options (--strict
for a mistake that is a warning)."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from aiprov.cli import main

CORPUS = Path(__file__).parent / "broken"
CASES = sorted(p for p in CORPUS.iterdir() if (p / "expected.txt").is_file())


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 150


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_broken_inventory_is_rejected(case):
    expected = (case / "expected.txt").read_text().strip()
    args = (case / "args.txt").read_text().split() if (case / "args.txt").is_file() else []
    result = CliRunner().invoke(main, ["validate", *args, "-i", str(case)])
    output = " ".join((result.stdout + result.stderr).split())
    assert result.exit_code == 4, output
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert expected in output


def test_missing_inventory_is_rejected(tmp_path):
    result = CliRunner().invoke(main, ["validate", "-i", str(tmp_path / "nope")])
    assert result.exit_code == 4
    assert "no such file or directory" in result.stderr
