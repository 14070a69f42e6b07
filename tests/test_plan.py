"""The plan's formulas with worked numbers (the same examples as docs/plan.md)."""

import json

import pytest

from aiprov import inventory, modelfacts, paths, plan
from aiprov.modelfacts import Quantization

GIB = 1024**3
AWQ = Quantization("awq", 4, 128)


def test_embedding_params_untied_counts_embedding_and_head():
    # Qwen3-32B: vocabulary 151936 × hidden 5120, input embedding and LM head.
    assert plan.embedding_params(151936, 5120, tied=False) == 1_555_824_640
    assert plan.embedding_params(2048, 128, tied=True) == 262_144


def test_awq_bytes_per_param():
    # 4 bits = 0.5 byte, plus per group of 128 a 16-bit scale and a 4-bit zero.
    assert plan.quantized_bytes_per_param(AWQ) == pytest.approx(0.5 + 2.5 / 128)
    assert plan.quantized_bytes_per_param(Quantization("fp8", 8, 0)) == 1.0


def test_weights_of_qwen3_32b_awq():
    embed = plan.embedding_params(151936, 5120, tied=False)
    total = plan.weight_bytes(32.76e9, embed, 2, AWQ)
    # 1.556e9 × 2 bytes + 31.204e9 × 0.51953 bytes = 3.112 GB + 16.211 GB
    assert total == pytest.approx(19.3229e9, rel=1e-4)
    assert total / GIB == pytest.approx(18.0, abs=0.01)


def test_weights_of_an_unquantized_model():
    # DeepSeek-R1-Distill-Qwen-32B, bf16: 32.76e9 × 2 bytes = 61.02 GiB; 15.26 GiB per GPU at TP 4
    total = plan.weight_bytes(32.76e9, 0, 2, None)
    assert total / GIB == pytest.approx(61.02, abs=0.01)
    assert total / GIB / 4 == pytest.approx(15.26, abs=0.01)


def test_kv_heads_split_or_replicated():
    assert plan.kv_heads_per_gpu(8, 4) == 2
    assert plan.kv_heads_per_gpu(4, 8) == 1  # fewer KV heads than GPUs: each GPU keeps one


def test_kv_bytes_per_token():
    # DeepSeek-R1-Distill-Qwen-32B, TP 4: 64 layers × 2 KV heads × 128 × (K,V) × 2 bytes
    assert plan.kv_bytes_per_token(64, 8, 128, tp=4, pp=1, elem_bytes=2) == 65536
    # Qwen3-235B-A22B, TP 4: 94 layers × 1 KV head × 128 × 2 × 2 bytes
    assert plan.kv_bytes_per_token(94, 4, 128, tp=4, pp=1, elem_bytes=2) == 48128
    # pipeline stages split the layers: ceil(94 / 4) = 24 layers on the largest stage
    assert plan.kv_bytes_per_token(94, 4, 128, tp=1, pp=4, elem_bytes=1) == 24 * 4 * 128 * 2


def test_served_dtype_and_kv_cache_dtype():
    assert plan.served_dtype_bytes("float32", None) == 2  # auto serves fp32 checkpoints in 16 bits
    assert plan.served_dtype_bytes("bfloat16", "float32") == 4
    assert plan.served_dtype_bytes("bfloat16", "half") == 2
    assert plan.kv_elem_bytes("fp8_e4m3", 2) == 1
    assert plan.kv_elem_bytes("auto", 2) == 2


def test_arg_value_reads_both_spellings():
    assert plan.arg_value(["--dtype", "half"], "--dtype") == "half"
    assert plan.arg_value(["--kv_cache_dtype=fp8"], "--kv-cache-dtype") == "fp8"
    assert plan.arg_value(["-q", "awq"], "--quantization", "-q") == "awq"
    assert plan.arg_value(["--enforce-eager"], "--dtype") is None


def _a10_host():
    return inventory.load(paths.profiles_dir() / "a10-4x").host("a10-01")


def test_a10_plan_numbers():
    hp = plan.plan_host(_a10_host(), "inv")
    llm, embedding, _reranker = hp.services
    # share 0.78 × 22.4 = 17.472 GiB; KV cache = 17.472 - 15.26 - 0.5 = 1.71 GiB
    assert llm.share_gib == pytest.approx(17.472)
    assert llm.kv_cache_gib == pytest.approx(1.71, abs=0.01)
    assert llm.kv_tokens == int(llm.kv_cache_gib * GIB // 65536)
    assert llm.kv_needed_gib == pytest.approx(1.0)  # 16384 tokens × 64 KiB
    assert embedding.kv_per_token_bytes == 0  # encoder-only: no KV cache
    gpu3 = hp.gpus[3]
    # three processes on GPU 3: 0.90 × 22.4 GiB + 3 × 0.6 GiB of CUDA context
    assert gpu3.fraction == pytest.approx(0.90)
    assert gpu3.free_gib == pytest.approx(22.4 - 0.90 * 22.4 - 3 * 0.6)
    assert hp.problems == []


def test_local_config_json_wins_over_the_catalog(tmp_path):
    model = tmp_path / "models" / "tiny"
    model.mkdir(parents=True)
    config = {
        "model_type": "qwen2", "num_attention_heads": 4, "num_key_value_heads": 2,
        "hidden_size": 128, "num_hidden_layers": 2, "vocab_size": 2048,
        "tie_word_embeddings": True, "max_position_embeddings": 4096, "torch_dtype": "bfloat16",
    }  # fmt: skip
    (model / "config.json").write_text(json.dumps(config))
    (model / "model.safetensors").write_bytes(b"\0" * 1_116_416)
    facts = modelfacts.lookup("tiny", "aiprov/tiny-qwen2", [tmp_path / "models"])
    assert facts.source.endswith("config.json")
    assert (facts.layers, facts.kv_heads, facts.head_dim, facts.max_model_len) == (2, 2, 32, 4096)
    assert facts.weight_bytes == 1_116_416
    service = plan.Service(index=0, name="t", model="tiny", gpus=[0], gpu_memory_utilization=0.5)
    sp = plan.plan_service(service, facts, 1.0)
    assert sp.weights_gib == pytest.approx(1_116_416 / GIB)
    assert sp.kv_per_token_bytes == 2 * 2 * 32 * 2 * 2


def test_catalog_matches_repo_alias_and_bare_name():
    assert modelfacts.from_catalog("tclf90/Qwen3-235B-A22B-Instruct-2507-AWQ").quantization == AWQ
    assert modelfacts.from_catalog("ZhipuAI/GLM-4.5V").attention_heads == 96
    assert modelfacts.from_catalog("bge-m3").encoder_only
    assert modelfacts.from_catalog("no/such-model") is None


def test_unreadable_config_falls_back_to_the_catalog(tmp_path):
    (tmp_path / "bge-m3").mkdir()
    (tmp_path / "bge-m3" / "config.json").write_text("{not json")
    assert modelfacts.lookup("bge-m3", "BAAI/bge-m3", [tmp_path]).source == "catalog"
