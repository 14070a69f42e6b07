"""vLLM option data from vLLM's own parser, and the exact-spelling argv check."""

import pytest

from aiprov import vllmflags

GUIDE_FLAGS_GONE_EVERYWHERE = [
    "--worker-use-ray", "--use-v2-block-manager", "--api-type", "--async-workers",
    "--prometheus-port", "--speculative-model", "--awq-bit-width", "--preemption-mode",
]  # fmt: skip


@pytest.fixture(params=["0.11.0", "0.32.0"])
def flags(request):
    found = vllmflags.load(request.param)
    assert found is not None
    return found


def test_both_versions_are_shipped():
    assert {"0.11.0", "0.32.0"} <= set(vllmflags.versions())
    assert vllmflags.load("0.0.1") is None


def test_option_counts_match_the_real_parsers():
    # `vllm serve --help=all` lists 243 (0.11.0) and 430 (0.32.0) option strings,
    # -h/--help included; the data leaves help out.
    for version, count in (("0.11.0", 241), ("0.32.0", 428)):
        assert len(vllmflags.load(version).options) == count


@pytest.mark.parametrize("flag", GUIDE_FLAGS_GONE_EVERYWHERE)
def test_the_guides_flags_are_rejected_with_a_hint(flags, flag):
    _parsed, problems = vllmflags.parse(
        flags, [flag, "x"] if flag != "--worker-use-ray" else [flag]
    )
    assert [p.flag for p in problems] == [flag]
    assert problems[0].message.startswith(f"vLLM {flags.version} has no option {flag}: ")


def test_task_exists_in_0_11_but_not_in_0_32():
    _, old = vllmflags.parse(vllmflags.load("0.11.0"), ["--task", "score"])
    assert [p.severity for p in old] == ["warning"]  # deprecated there
    assert "deprecated" in old[0].message
    _, new = vllmflags.parse(vllmflags.load("0.32.0"), ["--task", "score"])
    assert "replaced by --runner and --convert" in new[0].message


def test_normalised_spellings_are_accepted(flags):
    args = [
        "--max_num_seqs", "20", "--max-model-len=4096", "-q", "awq",
        "--enable-prefix-caching", "--no-enable-prefix-caching", "--hf-overrides", '{"a": 1}',
        "--compilation-config.cudagraph_mode", "FULL",
    ]  # fmt: skip
    parsed, problems = vllmflags.parse(flags, args)
    assert problems == []
    assert [p.flag for p in parsed] == [
        "--max-num-seqs", "--max-model-len", "--quantization", "--enable-prefix-caching",
        "--enable-prefix-caching", "--hf-overrides", "--compilation-config",
    ]  # fmt: skip
    assert parsed[0].values == ("20",)


def test_attached_short_option_value():
    parsed, problems = vllmflags.parse(vllmflags.load("0.11.0"), ["-O3"])
    assert problems == [] and parsed[0].flag == "--compilation-config"


def test_abbreviations_are_refused(flags):
    _, problems = vllmflags.parse(flags, ["--enforce-eag"])
    assert "abbreviation of --enforce-eager" in problems[0].message


def test_choices_values_and_switches(flags):
    _, problems = vllmflags.parse(
        flags,
        ["--dtype", "fp7", "--trust-remote-code=yes", "stray", "--max-model-len"],
    )
    messages = [p.message for p in problems]
    assert messages[0].startswith("--dtype fp7: not one of auto,")
    assert messages[1] == "--trust-remote-code takes no value"
    assert messages[2] == "'stray' is a value without an option before it"
    assert messages[3] == "--max-model-len needs a value"


def test_negative_numbers_are_values(flags):
    _, problems = vllmflags.parse(flags, ["--max-logprobs", "-1"])
    assert problems == []


def test_every_renamed_flag_is_really_gone_from_0_32():
    current = vllmflags.load("0.32.0")
    for flag in vllmflags.renamed():
        assert current.find(flag) is None, flag


def test_data_has_the_registries():
    for version in ("0.11.0", "0.32.0"):
        data = vllmflags.load(version)
        assert "awq_marlin" in data.quantization_methods
        assert "deepseek_r1" in data.extra["reasoning_parsers"]
        assert "hermes" in data.extra["tool_call_parsers"]
