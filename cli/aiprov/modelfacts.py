"""A model's architecture facts: from its config.json when its files are here,
else from the built-in catalog (data/models.yml)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from aiprov import paths

# Bytes per element of the dtypes vLLM serves with.
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "fp8": 1}
# Weight files whose sizes add up to the checkpoint's weights.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
_ENCODER_ONLY_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "modernbert"}


@dataclass(frozen=True)
class Quantization:
    method: str  # awq, gptq, fp8, ...
    bits: int
    group_size: int  # 0: per channel


@dataclass(frozen=True)
class ModelFacts:
    name: str
    source: str  # "catalog" or the path of the config.json
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    hidden_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_model_len: int
    dtype: str
    quantization: Quantization | None
    encoder_only: bool = False
    params: float | None = None  # total parameters
    weight_bytes: int | None = None  # size of the weight files, when they are here


@cache
def _entries() -> tuple[dict[str, Any], ...]:
    """The catalog's entries (data/models.yml), read once per process."""
    data = paths.read_yaml(paths.data_dir() / "models.yml")
    return tuple(data["models"])


@cache
def catalog() -> tuple[ModelFacts, ...]:
    return tuple(_from_catalog(entry) for entry in _entries())


def _from_catalog(entry: dict[str, Any]) -> ModelFacts:
    quant = entry.get("quantization")
    return ModelFacts(
        name=entry["repo"],
        source="catalog",
        layers=entry["layers"],
        attention_heads=entry["attention_heads"],
        kv_heads=entry["kv_heads"],
        head_dim=entry["head_dim"],
        hidden_size=entry["hidden_size"],
        vocab_size=entry["vocab_size"],
        tie_word_embeddings=entry["tie_word_embeddings"],
        max_model_len=entry["max_model_len"],
        dtype=entry["dtype"],
        quantization=Quantization(quant["method"], quant["bits"], quant["group_size"])
        if quant
        else None,
        encoder_only=entry.get("encoder_only", False),
        params=float(entry["params"]),
    )


def _names(entry: dict[str, Any]) -> set[str]:
    names = {entry["repo"], *entry.get("aliases", [])}
    return {n.lower() for n in names} | {n.split("/")[-1].lower() for n in names}


def from_catalog(*keys: str) -> ModelFacts | None:
    """The catalog entry whose repo or alias matches one of `keys` (with or without org)."""
    wanted = [k.lower() for k in keys if k]
    for full in wanted:  # an exact org/name match beats a bare name
        for entry, facts in zip(_entries(), catalog(), strict=True):
            if full in {n.lower() for n in [entry["repo"], *entry.get("aliases", [])]}:
                return facts
    for key in wanted:
        for entry, facts in zip(_entries(), catalog(), strict=True):
            if key.split("/")[-1] in _names(entry):
                return facts
    return None


def from_config(config_path: Path) -> ModelFacts:
    """Facts from a Hugging Face config.json (raises ValueError when it is unusable)."""
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {config_path}: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} is not a JSON object")
    # Multimodal models keep the language model's numbers in text_config.
    text = config.get("text_config") or config
    try:
        heads = int(text["num_attention_heads"])
        hidden = int(text["hidden_size"])
        layers = int(text["num_hidden_layers"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{config_path} lacks {error}") from None
    model_type = str(config.get("model_type", ""))
    quant = config.get("quantization_config") or text.get("quantization_config")
    quantization = None
    if isinstance(quant, dict):
        method = str(quant.get("quant_method", "unknown"))
        bits = int(quant.get("bits", quant.get("w_bit", 8 if method.startswith("fp8") else 4)))
        group = int(quant.get("group_size", quant.get("q_group_size", 0)) or 0)
        quantization = Quantization(method, bits, max(group, 0))
    encoder_only = model_type in _ENCODER_ONLY_TYPES
    max_len = int(text.get("max_position_embeddings", 2048))
    if model_type in {"roberta", "xlm-roberta"}:
        max_len -= 2  # positions start after the padding index
    dtype = str(text.get("torch_dtype") or config.get("torch_dtype") or config.get("dtype") or "")
    weights = [p for p in config_path.parent.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES)]
    return ModelFacts(
        name=config_path.parent.name,
        source=str(config_path),
        layers=layers,
        attention_heads=heads,
        kv_heads=int(text.get("num_key_value_heads") or heads),
        head_dim=int(text.get("head_dim") or hidden // heads),
        hidden_size=hidden,
        vocab_size=int(text.get("vocab_size", 0)),
        tie_word_embeddings=bool(
            text.get("tie_word_embeddings", config.get("tie_word_embeddings", False))
        ),
        max_model_len=max_len,
        dtype=dtype if dtype in DTYPE_BYTES else "bfloat16",
        quantization=quantization,
        encoder_only=encoder_only,
        weight_bytes=sum(p.stat().st_size for p in weights) if weights else None,
    )


def local_config(
    models_dirs: Iterable[Path], model_id: str, repo: str, exact: Iterable[Path] = ()
) -> Path | None:
    """The config.json of a model whose files are on this machine, if any.

    `exact` are the model's own directories (a local_dir, an absolute path); a
    models directory holds each model as <id>/, <org>/<name>/ or <name>/.
    """
    for directory in exact:
        if _is_file(Path(directory) / "config.json"):
            return Path(directory) / "config.json"
    names = [n for n in (model_id, repo, repo.split("/")[-1]) if n and not n.startswith("/")]
    for base in models_dirs:
        for name in names:
            candidate = Path(base) / name / "config.json"
            if _is_file(candidate):
                return candidate
    return None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for this system: no file here
        return False


def lookup(
    model_id: str, repo: str, models_dirs: Iterable[Path] = (), exact: Iterable[Path] = ()
) -> ModelFacts | None:
    """Facts for a models_catalog entry: its local config.json first, then the catalog.

    A local config.json without weight files borrows the catalog's parameter count.
    """
    config = local_config(models_dirs, model_id, repo, exact)
    known = from_catalog(repo, model_id)
    if config is not None:
        try:
            facts = from_config(config)
        except ValueError:
            return known
        if facts.weight_bytes is None and known is not None:
            return replace(facts, params=known.params)
        return facts
    return known
