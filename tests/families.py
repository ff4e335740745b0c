"""Tiny random-init configs of the families whose structure entry comes from discovery (no table entry)."""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    FalconConfig,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    GPTNeoXConfig,
    ModernBertConfig,
    Phi3Config,
)

_ENC = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=64, pad_token_id=0)
# Gemma-style decoders: grouped-query attention with a head_dim apart from hidden / heads (6 x 8 != 36)
_GEMMA = dict(vocab_size=120, hidden_size=36, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
              head_dim=8, intermediate_size=37, max_position_embeddings=64, pad_token_id=0)
DISCOVERED_ENCODERS = {
    "deberta-v2": lambda: DebertaV2Config(**_ENC, relative_attention=True, pos_att_type=["p2c", "c2p"],
                                          position_buckets=8, max_relative_positions=16, share_att_key=False),
    "deberta-v3": lambda: DebertaV2Config(**_ENC, relative_attention=True, pos_att_type=["p2c", "c2p"],
                                          position_buckets=8, max_relative_positions=16, share_att_key=True,
                                          norm_rel_ebd="layer_norm"),
    "distilbert": lambda: DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=4, hidden_dim=37, dropout=0.0,
                                           attention_dropout=0.0, max_position_embeddings=64, pad_token_id=0),
    "electra": lambda: ElectraConfig(**_ENC, embedding_size=24),
    "modernbert": lambda: ModernBertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                           intermediate_size=37, max_position_embeddings=64, pad_token_id=0,
                                           global_attn_every_n_layers=2, local_attention=4, embedding_dropout=0.0,
                                           mlp_dropout=0.0, attention_dropout=0.0, reference_compile=False),
}
DISCOVERED_DECODERS = {
    "gemma": lambda: GemmaConfig(**_GEMMA),
    "gemma2": lambda: Gemma2Config(**_GEMMA, sliding_window=4, attn_logit_softcapping=50.0,
                                   final_logit_softcapping=30.0),
    "gemma3_text": lambda: Gemma3TextConfig(**_GEMMA, sliding_window=4,
                                            layer_types=["sliding_attention", "full_attention"]),
    "phi3": lambda: Phi3Config(vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=6,
                               num_key_value_heads=2, intermediate_size=37, max_position_embeddings=64, pad_token_id=0,
                               resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0),
    "gpt_neox": lambda: GPTNeoXConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=37, max_position_embeddings=64, pad_token_id=0,
                                      hidden_dropout=0.0, attention_dropout=0.0),
    "falcon": lambda: FalconConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   pad_token_id=0, hidden_dropout=0.0, attention_dropout=0.0),  # multi-query
    "falcon-rw": lambda: FalconConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      pad_token_id=0, multi_query=False, parallel_attn=False, bias=True),
    "falcon-40b": lambda: FalconConfig(vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=6,
                                       num_kv_heads=2, new_decoder_architecture=True, pad_token_id=0),
}
DISCOVERED = {**DISCOVERED_ENCODERS, **DISCOVERED_DECODERS}


def discovered_config(name: str, num_labels: int = 3):
    config = DISCOVERED[name]()
    config.num_labels = num_labels
    return config


def discovered_model(name: str, seed: int = 0, causal: bool = False):
    torch.manual_seed(seed)
    cls = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
    return cls.from_config(discovered_config(name)).eval()
