"""Inference with a trained run (rebuilt from its base) or an export: label and probabilities, or a score.

    lightpeft predict --run_dir runs/rt --text "a gripping, funny film" "dull"
    lightpeft predict --run_dir exports/rt --input_file reviews.csv --output_file preds.jsonl
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import PredictConfig
from .data import encode_texts, read_texts
from .errors import LightPeftError
from .export import EXPORT_FILE, load_exported, read_export
from .io import atomic_path
from .models import load_tokenizer
from .report import markdown_table
from .runs import base_path_of, load_pruned, read_run

DEFAULT_MAX_SEQ_LENGTH = 128
TABLE_TEXT_WIDTH = 60


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
                  batch_size: int = 32, max_seq_length: int | None = None, device: str | None = None) -> list[dict]:
    """One result per text: `label`, `label_id` and `probabilities` (label -> p), or `score` for regression.

    Example:
        >>> predict_texts(load_predictor("runs/rt"), ["a gripping film"])  # doctest: +SKIP
        [{'text': 'a gripping film', 'label': 'fresh', 'label_id': 1, 'probabilities': {...}}]
    """
    task = predictor.task
    _check_pairs(task, text_pairs)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = predictor.model.to(device).eval()
    max_len = max_seq_length or task.get("max_seq_length") or DEFAULT_MAX_SEQ_LENGTH
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


def _check_pairs(task: dict, text_pairs: list[str] | None) -> None:
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
    """Markdown table: text (shortened), pair, label and one probability column per label (or the score)."""
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


def _shorten(text: str) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= TABLE_TEXT_WIDTH else text[: TABLE_TEXT_WIDTH - 3] + "..."


def run_predict(cfg: PredictConfig) -> list[dict]:
    """`lightpeft predict`: inputs from flags or a file, predictions written as JSONL (atomically) if asked."""
    out = Path(cfg.output_file) if cfg.output_file else None
    if out is not None and out.exists() and not cfg.overwrite_output_file:
        raise LightPeftError(f"--output_file {out} already exists; pass --overwrite_output_file or another path")
    if cfg.input_file:
        texts, pairs = read_texts(cfg.input_file, cfg.text_column, cfg.text_pair_column)
    else:
        texts, pairs = list(cfg.text), list(cfg.text_pair) if cfg.text_pair else None
    _check_pairs(read_task(cfg.run_dir), pairs)  # cheap checks before the model loads
    predictor = load_predictor(cfg.run_dir, cfg.model_name_or_path)
    rows = predict_texts(predictor, texts, pairs, cfg.batch_size, cfg.max_seq_length, cfg.device)
    if out is not None:
        with atomic_path(out) as tmp:
            tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows
