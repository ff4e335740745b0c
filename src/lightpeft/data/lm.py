"""Causal-LM fine-tuning on prompt/response records: loading, tokenization with the loss on the response only, and
a padding collator.

Records are JSON(L) objects with `prompt` and `response`, or Alpaca-style `instruction`, optional `input`, and
`output` (prompt = instruction, plus a blank line and the input when there is one). Each row becomes
`prompt tokens + response tokens (+ EOS)` with labels `-100` on the prompt, so the loss covers only the response.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import datasets
import pandas as pd
import torch

from lightpeft.config import DataConfig
from lightpeft.data.readers import read_table
from lightpeft.data.tables import train_and_eval
from lightpeft.data.task import TaskData
from lightpeft.errors import LightPeftError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of tokens without loss (prompt, padding); what torch's cross-entropy skips
PROMPT, RESPONSE = "prompt", "response"
# (prompt column, response column) of the record layouts understood, in detection order.
PROMPT_RESPONSE_LAYOUTS = ((PROMPT, RESPONSE), ("instruction", "output"))
LM_FEATURES = datasets.Features({PROMPT: datasets.Value("string"), RESPONSE: datasets.Value("string")})


def prompt_response_layout(columns) -> tuple[str, str] | None:
    """The (prompt, response) columns of a record layout, or `None` if the columns are not a causal-LM layout."""
    return next((layout for layout in PROMPT_RESPONSE_LAYOUTS if set(layout) <= set(columns)), None)


def load_prompt_response_file(path: Path, frame: pd.DataFrame, cfg: DataConfig) -> TaskData:
    """A `causal_lm` task from a JSON(L) file of prompt/response records (eval: `--validation_file` or a split)."""
    train, evaluation = train_and_eval(_prompt_response_frame(frame, path), cfg, path,
                                       lambda eval_path: _prompt_response_frame(read_table(eval_path), eval_path))
    return TaskData(
        name=path.stem,
        train=datasets.Dataset.from_pandas(train, features=LM_FEATURES, preserve_index=False),
        eval=datasets.Dataset.from_pandas(evaluation, features=LM_FEATURES, preserve_index=False),
        num_labels=None,
        label_names=None,
        metric_kind="perplexity",
        kind="causal_lm",
    )


def _prompt_response_frame(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    layout = prompt_response_layout(frame.columns)
    if layout is None:
        raise LightPeftError(f"{path} has no prompt/response columns (columns: {', '.join(map(str, frame.columns))});"
                             " use fields prompt + response, or instruction (+ input) + output")
    prompt_column, response_column = layout
    for column in layout:
        not_text = ~frame[column].map(lambda value: isinstance(value, str))
        if not_text.any():
            row = int(not_text.to_numpy().argmax()) + 1
            raise LightPeftError(f"{int(not_text.sum())} records in {path} have no text in {column!r} (first: "
                                 f"record {row}); fix or drop them")
    prompts = frame[prompt_column].tolist()
    if prompt_column == "instruction" and "input" in frame.columns:
        extra = [value if isinstance(value, str) else "" for value in frame["input"].tolist()]
        prompts = [f"{prompt}\n\n{more}" if more.strip() else prompt for prompt, more in zip(prompts, extra)]
    return pd.DataFrame({PROMPT: prompts, RESPONSE: frame[response_column].tolist()})


# ----------------------------------------------------------------------------------------------------------------
# Tokenization


def tokenize_causal_lm(
    task: TaskData, tokenizer, max_seq_length: int, use_chat_template: bool = False
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Prompt + response token ids with labels only on the response.

    Args:
        task: a `causal_lm` task.
        tokenizer: the model's tokenizer.
        max_seq_length: tokens per example. A longer example keeps its response up to what the prompt leaves, but
            at least `max_seq_length // 2` tokens of it; the prompt then loses its start.
        use_chat_template: render each record as a user turn and an assistant turn with the tokenizer's chat
            template (the template's end-of-turn tokens close the response); otherwise the prompt, a newline
            (unless the prompt ends in whitespace) and the response, then EOS.

    Returns:
        `(train, eval)` with columns `input_ids`, `attention_mask`, `labels` (`-100` on prompt tokens), unpadded.
    """
    if use_chat_template and not getattr(tokenizer, "chat_template", None):
        raise LightPeftError("--use_chat_template needs a tokenizer with a chat template, and this one has none; "
                             "drop --use_chat_template")
    render = _chat_token_ids if use_chat_template else _plain_token_ids

    def encode(batch: dict) -> dict:
        input_ids, labels = [], []
        for prompt_ids, response_ids in zip(*render(tokenizer, batch[PROMPT], batch[RESPONSE]), strict=True):
            prompt_ids, response_ids = fit_to_length(prompt_ids, response_ids, max_seq_length)
            input_ids.append(prompt_ids + response_ids)
            labels.append([IGNORE_INDEX] * len(prompt_ids) + response_ids)
        return {"input_ids": input_ids, "attention_mask": [[1] * len(ids) for ids in input_ids], "labels": labels}

    def tokenize(split: datasets.Dataset, name: str) -> datasets.Dataset:
        return split.map(encode, batched=True, remove_columns=split.column_names, desc=f"tokenizing {name}")

    return tokenize(task.train, "train"), tokenize(task.eval, "eval")


def _plain_token_ids(tokenizer, prompts: list[str], responses: list[str]) -> tuple[list, list]:
    texts = [prompt if not prompt or prompt[-1].isspace() else prompt + "\n" for prompt in prompts]
    prompt_ids = tokenizer(texts)["input_ids"]  # with the tokenizer's own start tokens (BOS for Llama)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    response_ids = [ids + eos for ids in tokenizer(responses, add_special_tokens=False)["input_ids"]]
    return prompt_ids, response_ids


def _chat_token_ids(tokenizer, prompts: list[str], responses: list[str]) -> tuple[list, list]:
    """Render both turns with the template; the response is what the assistant turn adds after the prompt."""
    prompt_texts, response_texts = [], []
    for prompt, response in zip(prompts, responses, strict=True):
        user = [{"role": "user", "content": prompt}]
        prompt_text = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": response}],
                                                  tokenize=False)
        if not full_text.startswith(prompt_text):
            raise LightPeftError("the tokenizer's chat template does not render the prompt as a prefix of the whole "
                                 "conversation, so the response tokens cannot be told apart; drop --use_chat_template")
        prompt_texts.append(prompt_text)
        response_texts.append(full_text[len(prompt_text):])
    # The template writes its special tokens as text; adding them again would double BOS.
    prompt_ids = tokenizer(prompt_texts, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response_texts, add_special_tokens=False)["input_ids"]
    return prompt_ids, response_ids


def encode_prompts(tokenizer, prompts: list[str], max_length: int, use_chat_template: bool = False) -> list[list[int]]:
    """Prompt token ids exactly as training renders a record before its response (the start of the assistant turn
    with `use_chat_template`), keeping the last `max_length` tokens: what generation continues from."""
    if use_chat_template and not getattr(tokenizer, "chat_template", None):
        raise LightPeftError("this run used a chat template, but the tokenizer has none; pass the run's tokenizer")
    render = _chat_token_ids if use_chat_template else _plain_token_ids
    prompt_ids, _ = render(tokenizer, prompts, [""] * len(prompts))
    return [ids[-max_length:] for ids in prompt_ids]


def fit_to_length(prompt_ids: list[int], response_ids: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Cut an example to `max_length` tokens: the response keeps what the prompt leaves, but at least
    `max_length // 2` tokens (and at least 1); the prompt then keeps its end, next to the response."""
    if len(prompt_ids) + len(response_ids) <= max_length:
        return prompt_ids, response_ids
    keep_response = min(len(response_ids), max(max_length - len(prompt_ids), max_length // 2, 1))
    keep_prompt = max_length - keep_response
    return (prompt_ids[len(prompt_ids) - keep_prompt:] if keep_prompt else []), response_ids[:keep_response]


@dataclass
class CausalLMCollator:
    """Pads `input_ids` (with `pad_token_id`), `attention_mask` (0) and `labels` (-100) on the right.

    Padding never carries loss, whatever `pad_token_id` is (decoders often pad with EOS, which the response ends
    with: labels are built from the tokenized rows, not from the pad id).
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = 8

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(feature["input_ids"]) for feature in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of  # round up
        batch = {
            "input_ids": torch.full((len(features), length), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(features), length), dtype=torch.long),
            "labels": torch.full((len(features), length), IGNORE_INDEX, dtype=torch.long),
        }
        for row, feature in enumerate(features):
            for key, padded in batch.items():
                values = feature[key]
                padded[row, : len(values)] = torch.as_tensor(values, dtype=torch.long)
        return batch


def causal_lm_collator(tokenizer, pad_to_multiple_of: int | None = 8) -> CausalLMCollator:
    """`CausalLMCollator` padding with the tokenizer's pad token, else EOS, else 0 (never attended, never scored)."""
    pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    return CausalLMCollator(pad_token_id=pad_id, pad_to_multiple_of=pad_to_multiple_of)
