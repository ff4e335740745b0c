"""Inference with a trained run (rebuilt from its base) or an export, by task kind: label and probabilities, or a
score (classification / regression); the answer span of a context (extractive QA); a generated response (causal LM).

    lightpeft predict --run_dir runs/rt --text "a gripping, funny film" "dull"
    lightpeft predict --run_dir exports/rt --input_file reviews.csv --output_file preds.jsonl
    lightpeft predict --run_dir runs/squad --text "Who wrote it?" --text_pair "It was written by ..."
    lightpeft predict --run_dir runs/instruct --text "Name a colour." --max_new_tokens 16
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lightpeft.config import PredictConfig
from lightpeft.core import heads
from lightpeft.core.models import load_tokenizer
from lightpeft.data import encode_prompts, encode_texts, postprocess_qa, qa_rows, qa_windows, read_texts
from lightpeft.errors import LightPeftError
from lightpeft.io import atomic_path
from lightpeft.report import markdown_table
from lightpeft.stages.export import EXPORT_FILE, load_exported, read_export
from lightpeft.stages.outputs import check_output_file
from lightpeft.stages.run_dir import base_path_of, load_pruned, read_run

DEFAULT_MAX_SEQ_LENGTH = 128
DEFAULT_MAX_ANSWER_LENGTH = 30
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TABLE_TEXT_WIDTH = 60
QA_COLUMNS = ("question", "context")  # default --text_column / --text_pair_column of a QA --input_file
PROMPT_COLUMN = "prompt"  # default --text_column of a causal-LM --input_file (CSV/JSON(L))


@dataclass
class Predictor:
    """A ready model with its tokenizer and what its task's outputs mean (run.json / export.json `task`)."""

    model: torch.nn.Module
    tokenizer: object
    task: dict


def load_predictor(run_or_export_dir: str | Path, base: str | None = None) -> Predictor:
    """A run directory (rebuilt from `base`, default: its training base) or an export directory, ready to predict."""
    path = Path(run_or_export_dir)
    if is_export(path):
        task = read_export(path)["task"]
        return Predictor(load_exported(path), load_tokenizer(str(path)), task)
    summary = read_run(path)
    base_path = base_path_of(summary, path, base)
    model = load_pruned(base_path, path)
    return Predictor(model, load_tokenizer(base_path, summary.get("tokenizer_path")), summary["task"])


def is_export(path: str | Path) -> bool:
    return (Path(path) / EXPORT_FILE).is_file()


def read_task(run_or_export_dir: str | Path) -> dict:
    """The task description (labels, pairs, length) of a run or export, without loading any model."""
    path = Path(run_or_export_dir)
    return read_export(path)["task"] if is_export(path) else read_run(path)["task"]


@torch.no_grad()
def predict_texts(predictor: Predictor, texts: list[str], text_pairs: list[str] | None = None,
                  batch_size: int = 32, max_seq_length: int | None = None, device: str | None = None,
                  max_new_tokens: int = 64) -> list[dict]:
    """One result per text, by the task's kind:

    * classification: `label`, `label_id` and `probabilities` (label -> p); regression: `score`;
    * qa: `texts` are questions, `text_pairs` their contexts; `answer` (the best span, "" if none);
    * causal_lm: `texts` are prompts (rendered as in training); `response`, greedy, at most `max_new_tokens`.

    Example:
        >>> predict_texts(load_predictor("runs/rt"), ["a gripping film"])  # doctest: +SKIP
        [{'text': 'a gripping film', 'label': 'fresh', 'label_id': 1, 'probabilities': {...}}]
    """
    task = predictor.task
    _check_pairs(task, text_pairs)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = predictor.model.to(device).eval()
    max_len = max_seq_length or task.get("max_seq_length") or DEFAULT_MAX_SEQ_LENGTH
    kind = heads.kind_of(task)
    if kind == "qa":
        return _answer(model, predictor.tokenizer, task, texts, text_pairs, batch_size, max_len, device)
    if kind == "causal_lm":
        return _generate(model, predictor.tokenizer, task, texts, batch_size, max_len, device, max_new_tokens)
    rows = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        pairs = text_pairs[start : start + batch_size] if text_pairs else None
        batch = encode_texts(predictor.tokenizer, chunk, pairs, max_len, padding=True, return_tensors="pt")
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()  # (B, labels)
        for i, text in enumerate(chunk):
            row = {"text": text, **({"text_pair": pairs[i]} if pairs else {})}
            rows.append({**row, **_interpret(logits[i], task)})
    return rows


def _answer(model, tokenizer, task: dict, questions: list[str], contexts: list[str], batch_size: int, max_len: int,
            device) -> list[dict]:
    """The best answer span of each context: windows as in training, logits of every window, `postprocess_qa`."""
    rows = qa_rows(questions, contexts)
    windows = qa_windows(rows, tokenizer, max_len, task.get("doc_stride"), keep_offsets=True, name="questions")
    inputs = windows.remove_columns([c for c in windows.column_names if c not in MODEL_INPUTS])
    starts, ends = [], []
    for start in range(0, len(inputs), batch_size):
        batch = tokenizer.pad(inputs[start : start + batch_size], return_tensors="pt")
        out = model(**{k: v.to(device) for k, v in batch.items()})
        starts += list(out.start_logits.float().cpu().numpy())  # windows of (T_batch,)
        ends += list(out.end_logits.float().cpu().numpy())
    width = max(len(row) for row in starts)
    start_logits, end_logits = (np.stack([np.pad(row, (0, width - len(row)), constant_values=-1e4) for row in side])
                                for side in (starts, ends))  # (windows, T)
    answers = postprocess_qa(rows, windows, start_logits, end_logits,
                             max_answer_length=task.get("max_answer_length") or DEFAULT_MAX_ANSWER_LENGTH)
    return [{"question": q, "context": c, "answer": answers[str(i)]}
            for i, (q, c) in enumerate(zip(questions, contexts, strict=True))]


def _generate(model, tokenizer, task: dict, prompts: list[str], batch_size: int, max_len: int, device,
              max_new_tokens: int) -> list[dict]:
    """Greedy continuation of each prompt (left-padded batches; generation derives positions from the mask)."""
    pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    encoded = encode_prompts(tokenizer, prompts, max_len, task.get("use_chat_template", False))
    rows = []
    for start in range(0, len(prompts), batch_size):
        chunk = encoded[start : start + batch_size]
        width = max(map(len, chunk))
        input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in chunk])  # (B, T), left-padded
        attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in chunk])
        out = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                             max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id)
        for prompt, new_tokens in zip(prompts[start : start + batch_size], out[:, width:].cpu(), strict=True):
            rows.append({"prompt": prompt, "response": tokenizer.decode(new_tokens, skip_special_tokens=True)})
    return rows


def _check_pairs(task: dict, text_pairs: list[str] | None) -> None:
    kind = heads.kind_of(task)
    if kind == "qa" and not text_pairs:
        raise LightPeftError(f"task {task['name']!r} answers questions from a context; pass the questions as --text "
                             "and one context per question as --text_pair (or an input file with question and "
                             "context columns)")
    if kind == "causal_lm" and text_pairs:
        raise LightPeftError(f"task {task['name']!r} continues prompts; pass them as --text and drop --text_pair")
    if kind == "qa" or kind == "causal_lm":
        return
    if task.get("has_pair") and not text_pairs:
        raise LightPeftError(f"task {task['name']!r} classifies text pairs; pass --text_pair (or an input file with "
                             "a second text column)")
    if text_pairs and not task.get("has_pair"):
        raise LightPeftError(f"task {task['name']!r} classifies single texts; drop --text_pair / the pair column")


def _interpret(logits: torch.Tensor, task: dict) -> dict:
    if task["regression"]:
        return {"score": float(logits[0])}
    names = task.get("label_names") or [str(i) for i in range(logits.numel())]
    probs = torch.softmax(logits, dim=-1).tolist()
    best = int(torch.argmax(logits))
    return {"label": names[best], "label_id": best, "probabilities": dict(zip(names, probs))}


def predictions_table(rows: list[dict]) -> str:
    """Markdown table: the inputs (shortened) and the prediction: label and one probability column per label, the
    score, the answer (QA) or the response (causal LM)."""
    if rows and ("answer" in rows[0] or "response" in rows[0]):
        headers = list(rows[0])
        return markdown_table(headers, [[_shorten(row[h]) for h in headers] for row in rows])
    has_pair = any("text_pair" in row for row in rows)
    labels = list(rows[0]["probabilities"]) if rows and "probabilities" in rows[0] else []
    headers = ["text", *(["text_pair"] if has_pair else []), *(["label", *(f"p({n})" for n in labels)]
                                                                 if labels else ["score"])]
    table = []
    for row in rows:
        cells = [_shorten(row["text"]), *([_shorten(row.get("text_pair", ""))] if has_pair else [])]
        cells += [row["label"], *row["probabilities"].values()] if labels else [row["score"]]
        table.append(cells)
    return markdown_table(headers, table)


def _input_columns(cfg: PredictConfig, kind: str) -> tuple[str | None, str | None]:
    """Text and pair columns of `--input_file`: as named, else the kind's own (QA: question + context; causal LM:
    prompt), else auto-detected as for training files."""
    if kind == "qa":
        return cfg.text_column or QA_COLUMNS[0], cfg.text_pair_column or QA_COLUMNS[1]
    if kind == "causal_lm" and Path(cfg.input_file).suffix.lower() != ".txt":
        return cfg.text_column or PROMPT_COLUMN, None
    return cfg.text_column, cfg.text_pair_column


def _shorten(text: str) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= TABLE_TEXT_WIDTH else text[: TABLE_TEXT_WIDTH - 3] + "..."


def run_predict(cfg: PredictConfig) -> list[dict]:
    """`lightpeft predict`: inputs from flags or a file, predictions written as JSONL (atomically) if asked."""
    inputs = {"--input_file": cfg.input_file, "--run_dir": cfg.run_dir, "--model_name_or_path": cfg.model_name_or_path}
    out = check_output_file(cfg.output_file, cfg.overwrite_output_file, "--output_file", "--overwrite_output_file",
                            inputs) if cfg.output_file else None
    task = read_task(cfg.run_dir)
    if cfg.input_file:
        texts, pairs = read_texts(cfg.input_file, *_input_columns(cfg, heads.kind_of(task)))
    else:
        texts, pairs = list(cfg.text), list(cfg.text_pair) if cfg.text_pair else None
    _check_pairs(task, pairs)  # cheap checks before the model loads
    predictor = load_predictor(cfg.run_dir, cfg.model_name_or_path)
    rows = predict_texts(predictor, texts, pairs, cfg.batch_size, cfg.max_seq_length, cfg.device, cfg.max_new_tokens)
    if out is not None:
        with atomic_path(out) as tmp:
            tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows
