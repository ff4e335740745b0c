"""Tiny random-init models built from configs (no hub), shared by the tests."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    OPTConfig,
    Qwen2Config,
    Qwen3Config,
    RobertaConfig,
    XLMRobertaConfig,
)

TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=64)
# Decoders pad with id 0, as `tiny_batch` does. Llama-style ones use grouped-query attention: 6 query heads over
# 2 key/value heads (3 for Mistral, with a sliding window shorter than the test sequences).
_GQA = dict(vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
            head_dim=8, intermediate_size=37, max_position_embeddings=64, pad_token_id=0)
DECODERS = {
    "opt": lambda **kw: OPTConfig(**{**dict(vocab_size=120, hidden_size=32, word_embed_proj_dim=32, num_hidden_layers=2,
                                           num_attention_heads=4, ffn_dim=37, max_position_embeddings=64, dropout=0.0,
                                           attention_dropout=0.0, pad_token_id=0), **kw}),
    "gpt2": lambda **kw: GPT2Config(**{**dict(vocab_size=120, n_embd=32, n_layer=2, n_head=4, n_inner=37,
                                             n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                             pad_token_id=0), **kw}),
    "llama": lambda **kw: LlamaConfig(**{**_GQA, **kw}),
    "qwen2": lambda **kw: Qwen2Config(**{**_GQA, **kw}),
    "qwen3": lambda **kw: Qwen3Config(**{**_GQA, **kw}),
    "mistral": lambda **kw: MistralConfig(**{**_GQA, "num_key_value_heads": 3, "sliding_window": 4, **kw}),
}
FAMILIES = ["bert", "roberta", *DECODERS]  # `xlm-roberta` (RoBERTa's code) is built too, and tested once


def tiny_config(family: str = "bert", num_labels: int = 3, **overrides):
    if family in DECODERS:
        return DECODERS[family](num_labels=num_labels, **overrides)
    kwargs = {**TINY, "num_labels": num_labels, **overrides}
    if family in ("roberta", "xlm-roberta"):
        return (RobertaConfig if family == "roberta" else XLMRobertaConfig)(**{"pad_token_id": 1, **kwargs})
    return BertConfig(**kwargs)


def tiny_model(family: str = "bert", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config(family, **overrides)).eval()


def tiny_batch(batch: int = 3, length: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (batch, length), generator=g)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[0, -2:] = 0  # some padding (right side, id 0: decoder classifiers read the last other token)
    input_ids[0, -2:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


WORDS = [f"w{i}" for i in range(90)]


def save_tiny_model_dir(directory, family: str = "bert", seed: int = 0, headless: bool = False):
    """A tiny random-init model + word-level WordPiece tokenizer saved like a real checkpoint (`headless`: the bare
    encoder, like a pretrained base without a task head)."""
    from transformers import BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    # decoders take no token_type_ids; their configs pad with id 0 = [PAD], as this tokenizer does
    inputs = ["input_ids", "attention_mask"] if family in DECODERS else ["input_ids", "token_type_ids", "attention_mask"]
    tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True, model_input_names=inputs)
    overrides = {"pad_token_id": 0} if family in ("roberta", "xlm-roberta") else {}
    model = tiny_model(family, seed=seed, num_labels=2, **overrides)
    (model.base_model if headless else model).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_tiny_csv(path, rows: int = 96, seed: int = 0):
    """Sentences of tiny-vocab words; label 1 iff word w1 occurs (learnable, not trivial at init)."""
    import random

    rng = random.Random(seed)
    lines = ["text,label"]
    for i in range(rows):
        words = rng.choices(WORDS[2:], k=rng.randint(3, 9))
        label = i % 2
        if label:
            words[rng.randrange(len(words))] = "w1"
        lines.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_model_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory):
    return write_tiny_csv(tmp_path_factory.mktemp("data") / "tiny.csv")


def write_three_label_csv(path, rows: int = 90, seed: int = 1):
    """A 3-class task on the same vocabulary: label 1 iff w1 occurs, 2 iff w2 occurs, else 0."""
    import random

    rng = random.Random(seed)
    lines = ["text,label"]
    for i in range(rows):
        words = rng.choices(WORDS[3:], k=rng.randint(3, 9))
        label = i % 3
        if label:
            words[rng.randrange(len(words))] = f"w{label}"
        lines.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def train_tiny_run(out, model_dir, csv, peft: str = "lora"):
    """estimate -> plan -> prune -> train on a tiny checkpoint (seconds); returns (run dir, RunResult)."""
    from lightpeft import (
        DataConfig,
        EstimateConfig,
        LightPeftTrainingArguments,
        ModelConfig,
        PeftSettings,
        PlanConfig,
        run,
    )

    args = LightPeftTrainingArguments(output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=8,
                                      learning_rate=5e-3, logging_steps=5, disable_tqdm=True, seed=0, use_cpu=True)
    result = run(ModelConfig(model_name_or_path=str(model_dir)), DataConfig(task=str(csv), max_seq_length=16),
                 PeftSettings(peft=peft), EstimateConfig(estimate_steps=4), PlanConfig(), args)
    return out, result


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory):
    """A headless tiny encoder: the one base that several task runs share."""
    return save_tiny_model_dir(tmp_path_factory.mktemp("tiny-base"), headless=True)


@pytest.fixture(scope="session")
def lora_run(base_model_dir, tiny_csv, tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("lora") / "run", base_model_dir, tiny_csv, "lora")


@pytest.fixture(scope="session")
def adapter_run(base_model_dir, tmp_path_factory):
    csv = write_three_label_csv(tmp_path_factory.mktemp("data3") / "three.csv")
    return train_tiny_run(tmp_path_factory.mktemp("adapter") / "run", base_model_dir, csv, "adapter")


def example_batch():
    return {"input_ids": torch.tensor([[2, 7, 9, 11, 3], [2, 6, 8, 3, 0]]),
            "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])}


@pytest.fixture(scope="session")
def family_runs(tmp_path_factory):
    """`get(family, peft)` -> (base dir, run dir, RunResult) of estimate -> plan (head ratio 0.5) -> prune -> train
    on a saved tiny model of any family; each (family, peft) is trained once per session and shared by the tests
    that need it."""
    from lightpeft import (
        DataConfig,
        EstimateConfig,
        LightPeftTrainingArguments,
        ModelConfig,
        PeftSettings,
        PlanConfig,
        run,
    )

    data = write_tiny_csv(tmp_path_factory.mktemp("decoder-data") / "tiny.csv", rows=40)
    trained = {}

    def get(family: str, peft: str = "lora"):
        if (family, peft) not in trained:
            root = tmp_path_factory.mktemp(f"{family}-{peft}")
            model_dir = save_tiny_model_dir(root / "base", family)
            args = LightPeftTrainingArguments(output_dir=str(root / "run"), num_train_epochs=1, learning_rate=5e-3,
                                              per_device_train_batch_size=12, disable_tqdm=True, seed=0, use_cpu=True)
            result = run(ModelConfig(str(model_dir)), DataConfig(task=str(data), max_seq_length=16),
                         PeftSettings(peft=peft), EstimateConfig(estimate_steps=2), PlanConfig(head_ratio=0.5), args)
            trained[family, peft] = (model_dir, root / "run", result)
        return trained[family, peft]

    return get


def decoder_batch():
    """A right-padded batch for the tiny decoders (pad id 0; the classifier reads the last other token)."""
    return {"input_ids": torch.tensor([[2, 7, 9, 11, 3, 0, 0], [5, 6, 7, 8, 9, 10, 11]]),
            "attention_mask": torch.tensor([[1] * 5 + [0] * 2, [1] * 7])}
