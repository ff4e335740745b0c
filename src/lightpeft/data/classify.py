"""Tokenization of classification / regression rows, and the tokenizer checks every task kind shares."""

from __future__ import annotations

import datasets

from lightpeft.data.task import LABEL, TEXT, TEXT_PAIR, TaskData
from lightpeft.errors import LightPeftError


def tokenize_classification(
    task: TaskData, tokenizer, max_seq_length: int
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """`text` (+ `text_pair`) -> `input_ids`, `attention_mask`, `token_type_ids` (if made), `labels`; no padding."""
    has_pair = task.has_pair

    def encode(batch: dict) -> dict:
        encoded = encode_texts(tokenizer, batch[TEXT], batch[TEXT_PAIR] if has_pair else None, max_seq_length)
        encoded["labels"] = batch[LABEL]
        return dict(encoded)

    def tokenize(split: datasets.Dataset, name: str) -> datasets.Dataset:
        tokenized = split.map(encode, batched=True, remove_columns=split.column_names, desc=f"tokenizing {name}")
        # map re-infers python floats as float64; keep the task's label dtype (float32 / int64) for the loss.
        return tokenized.cast_column("labels", split.features[LABEL])

    return tokenize(task.train, "train"), tokenize(task.eval, "eval")


def encode_texts(tokenizer, texts: list[str], pairs: list[str] | None, max_seq_length: int, **kwargs):
    """Tokenize texts (and second texts) exactly as training did: truncation to `max_seq_length`, longest first,
    and a newline before the second text for tokenizers whose pair template adds no separator. `kwargs` go to
    the tokenizer (e.g. `padding=True, return_tensors="pt"` for inference)."""
    texts_in = (texts, [pair_separator(tokenizer) + pair for pair in pairs]) if pairs is not None else (texts,)
    return tokenizer(*texts_in, truncation=True, max_length=max_seq_length, **kwargs)


def pair_separator(tokenizer) -> str:
    """Text put between the two texts of a pair: nothing for encoders (their template adds [SEP]), a newline
    for decoder tokenizers whose pair template adds no token, so the two texts do not run together."""
    if tokenizer.num_special_tokens_to_add(pair=True) > tokenizer.num_special_tokens_to_add(pair=False):
        return ""
    return "\n"


def check_max_seq_length(tokenizer, max_seq_length: int) -> None:
    if max_seq_length <= 0:
        raise LightPeftError(f"--max_seq_length must be > 0, got {max_seq_length}")
    model_max = getattr(tokenizer, "model_max_length", None)
    # Tokenizers without a known limit report a huge sentinel (int(1e30)); only a real limit is enforced.
    if model_max is not None and model_max < 1_000_000 and max_seq_length > model_max:
        raise LightPeftError(
            f"--max_seq_length {max_seq_length} exceeds the model's limit of {model_max} tokens; pass "
            f"--max_seq_length {model_max} or less"
        )
