"""Tiny random-init models built from configs (no hub), shared by the tests."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, RobertaConfig

TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=64)


def tiny_config(family: str = "bert", num_labels: int = 3, **overrides):
    kwargs = {**TINY, "num_labels": num_labels, **overrides}
    if family == "roberta":
        return RobertaConfig(pad_token_id=1, **kwargs)
    return BertConfig(**kwargs)


def tiny_model(family: str = "bert", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config(family, **overrides)).eval()


def tiny_batch(batch: int = 3, length: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (batch, length), generator=g)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[0, -2:] = 0  # some padding
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@pytest.fixture(params=["bert", "roberta"])
def family(request):
    return request.param
