"""Generic text/label tables: a CSV / TSV / JSON(L) file (columns auto-detected or named by flags), or a hub dataset."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import pandas as pd

from lightpeft.config import DataConfig
from lightpeft.data.labels import check_finite_labels, check_no_empty_labels, encode_labels
from lightpeft.data.readers import TABLE_SUFFIXES, read_table
from lightpeft.data.task import TaskData, column_list, first_line, make_dataset, split_frame
from lightpeft.errors import LightPeftError

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class _Columns:
    text: str
    pair: str | None
    label: str


def load_table_file(path: Path, cfg: DataConfig, train_frame: pd.DataFrame | None = None) -> TaskData:
    """A classification/regression task from a table file (and `--validation_file`, else a seeded split).

    Args:
        path: the training file.
        cfg: data options (`text_column`, `text_pair_column`, `label_column`, `validation_file`, split options).
        train_frame: the file already read, if the caller has it.
    """
    train_frame = read_table(path) if train_frame is None else train_frame
    columns = _pick_columns(train_frame, cfg, path)
    _check_table_frame(train_frame, columns, path)
    def read_eval(eval_path: Path) -> pd.DataFrame:
        eval_frame = read_table(eval_path)
        _check_table_frame(eval_frame, columns, eval_path)
        return eval_frame

    train_frame, eval_frame = train_and_eval(train_frame, cfg, path, read_eval)
    eval_source = cfg.validation_file or f"the held-out split of {path}"
    return _task_from_frames(path.stem, train_frame, eval_frame, columns, eval_source=eval_source)


def train_and_eval(train: pd.DataFrame, cfg: DataConfig, path: Path,
                   read_eval: Callable[[Path], pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The eval split: `--validation_file` read with `read_eval`, else a seeded hold-out of `train`."""
    if cfg.validation_file is not None:
        return train, read_eval(existing_validation_file(cfg))
    logger.info("no --validation_file: holding out %s of %s (seed %s)", cfg.validation_fraction, path,
                cfg.split_seed)
    return split_frame(train, cfg.validation_fraction, cfg.split_seed, path)


def existing_validation_file(cfg: DataConfig) -> Path:
    eval_path = Path(cfg.validation_file).expanduser()
    if not eval_path.is_file():
        raise LightPeftError(f"--validation_file {eval_path} does not exist; check the path (relative to {Path.cwd()})")
    return eval_path


def load_hub_task(name: str, cfg: DataConfig) -> TaskData:
    """A `datasets.load_dataset` name; works only where a hub is reachable."""
    if cfg.validation_file is not None:
        raise LightPeftError(f"--validation_file only applies to a CSV/TSV/JSON(L) --task file, not {name!r}; drop it")
    try:
        dataset_dict = datasets.load_dataset(name)
    except Exception as exc:  # offline, unknown name, gated...: all mean this name cannot be used
        raise LightPeftError(
            f"--task {name!r} is not a packaged task (rotten_tomatoes), an existing GLUE/SuperGLUE/SQuAD directory "
            f"or {'/'.join(TABLE_SUFFIXES)} file (relative to {Path.cwd()}), nor loadable with "
            f"datasets.load_dataset ({type(exc).__name__}: {first_line(exc)}); pass one of those"
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
        train_frame, eval_frame = split_frame(train_frame, cfg.validation_fraction, cfg.split_seed, Path(name))
    else:
        eval_frame = dataset_dict[eval_split].to_pandas()
        _check_table_frame(eval_frame, columns, Path(f"{name}[{eval_split}]"))
    label_feature = train.features.get(columns.label)
    class_names = list(label_feature.names) if isinstance(label_feature, datasets.ClassLabel) else None
    return _task_from_frames(name.replace("/", "_"), train_frame, eval_frame, columns, class_names,
                             f"{name}[{eval_split or 'held-out split'}]")


def _task_from_frames(
    name: str, train_frame: pd.DataFrame, eval_frame: pd.DataFrame, columns: _Columns,
    class_names: list[str] | None = None, eval_source: str = "eval split",
) -> TaskData:
    labels = encode_labels(train_frame[columns.label], eval_frame[columns.label], class_names, eval_source)
    is_regression = labels.num_labels == 1

    def dataset(frame: pd.DataFrame, split_labels: list) -> datasets.Dataset:
        pairs = _as_text(frame[columns.pair]) if columns.pair else None
        return make_dataset(_as_text(frame[columns.text]), pairs, split_labels, is_regression)

    return TaskData(
        name=name,
        train=dataset(train_frame, labels.train),
        eval=dataset(eval_frame, labels.eval),
        num_labels=labels.num_labels,
        label_names=labels.label_names,
        metric_kind="pearson" if is_regression else "accuracy",
    )


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
                f"--text_column NAME (columns: {column_list(frame)})"
            )
    elif pair is None:
        pair = next((second for first, second in TEXT_PAIR_PRESETS if first == text and second in present), None)
    return _Columns(text=text, pair=pair, label=cfg.label_column or DEFAULT_LABEL_COLUMN)


def _detect_text_columns(present: set[str]) -> tuple[str | None, str | None]:
    for first, second in TEXT_PAIR_PRESETS:
        if first in present and second in present:
            return first, second
    return next((name for name in TEXT_COLUMN_CANDIDATES if name in present), None), None


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
    frame = read_table(path)
    cfg = DataConfig(task=str(path), text_column=text_column, text_pair_column=text_pair_column)
    columns = _pick_columns(frame, cfg, path)
    _check_text_columns(frame, columns, path)
    return _as_text(frame[columns.text]), _as_text(frame[columns.pair]) if columns.pair else None


def _check_table_frame(frame: pd.DataFrame, columns: _Columns, path: Path) -> None:
    _check_text_columns(frame, columns, path)
    if columns.label not in frame.columns:
        raise LightPeftError(
            f"data file {path} has no column {columns.label!r}; pass --label_column NAME "
            f"(columns: {column_list(frame)})"
        )
    check_no_empty_labels(frame, columns.label, path)
    check_finite_labels(frame, columns.label, path)


def _check_text_columns(frame: pd.DataFrame, columns: _Columns, path: Path) -> None:
    """The text (and pair) columns exist and every row has a text."""
    for column, flag in ((columns.text, "--text_column"), (columns.pair, "--text_pair_column")):
        if column is not None and column not in frame.columns:
            raise LightPeftError(
                f"data file {path} has no column {column!r}; pass {flag} NAME (columns: {column_list(frame)})"
            )
    for column in (columns.text, columns.pair):
        if column is not None:
            missing = int(frame[column].isna().sum())
            if missing:
                raise LightPeftError(
                    f"{missing} of {len(frame)} rows in {path} have no text in column {column!r}; drop or fill them"
                )


def _as_text(column: pd.Series) -> list[str]:
    return [value if isinstance(value, str) else str(value) for value in column.tolist()]
