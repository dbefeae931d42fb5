"""Shared fixtures: tiny random encoders built from a config (no downloads) and the GLUE sample."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GLUE_SAMPLE = REPO / "data" / "glue_sample"
GLUE_YAML = REPO / "task_defs" / "glue.yml"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Sentence pairs (from STS-B and RTE) and labels for the methods' unit tests: rte (classes), stsb (scores).
SENTENCE_PAIRS = [
    ("A plane is taking off.", "An air plane is taking off."),
    ("A man is playing a large flute.", "A man is playing a flute."),
    ("No weapons were found in Iraq yet.", "Weapons were found in Iraq."),
    ("The company said it will discuss the drug with federal regulators on Monday.", "The drug is new."),
]
PAIR_LABELS = {"rte": [0, 1, 1, 0], "stsb": [5.0, 3.8, 1.2, 0.4]}


def _vocab_from_sample(limit: int = 2000) -> list[str]:
    """Whole lowercase words of the GLUE sample, so tiny tokenizers see realistic ids."""
    counts: dict[str, int] = {}
    for f in sorted(GLUE_SAMPLE.rglob("*.tsv")):
        for w in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]", f.read_text(encoding="utf-8-sig").lower()):
            counts[w] = counts.get(w, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w))[:limit]
    return SPECIALS + words + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]


def build_tiny_encoder(directory: Path, model_type: str = "bert", seed: int = 0) -> Path:
    """Save a randomly initialized 2-layer encoder (hidden 32) and a WordPiece tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(_vocab_from_sample()) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=160,
        type_vocab_size=2,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """Path of a tiny random BERT model directory with a fast tokenizer."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def glue_sample() -> Path:
    return GLUE_SAMPLE


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Each test tokenizes into its own cache directory."""
    monkeypatch.setenv("MTADV_CACHE", str(tmp_path / "cache"))
