"""Plans sized by accuracy: candidate head/FFN ratios scored on held-out training rows, then the cheapest one
within the user's metric budget.

At the end of estimation the model (gates + PEFT on every linear) is already trained on the task. For every
candidate (head ratio, FFN ratio) its keep sets are computed exactly as the plan would compute them, the gates are
set to 1 on kept units and 0 elsewhere (the masked twin of the pruned model) and the held-out rows are evaluated:
forward passes only, no training. The prediction ignores the recovery the training stage brings, so it is a
conservative estimate of the final drop. `choose_ratios` then picks, among candidates whose predicted drop is
within `max_metric_drop`, the one with the cheapest counted training step.

Early in a short run the estimation model may not have learned the task yet; then every candidate reads about
chance and the search would pick the most aggressive plan for nothing. The unpruned model must beat a constant
predictor (the majority class; for regression and perplexity no check) by `MIN_INFORMATIVE_POINTS` on the held-out
rows, otherwise the plan keeps every head and neuron, says why, and suggests a longer estimation.

A metric on a few hundred rows is noisy (one row of 256 is 0.4 points), and a lucky candidate can read better than
a milder one. The drop of a candidate is therefore taken as the largest drop among all candidates that prune no
more heads and no more neurons than it does (a monotone envelope): pruning more is never predicted to cost less.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging

import numpy as np
import torch

from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft.config import PlanConfig
from lightpeft.methods.light_peft.masks import Gates, set_binary
from lightpeft.methods.light_peft.selection import keep_structure
from lightpeft.metrics import GREATER_IS_BETTER, MAIN_METRIC, compute_metrics

log = logging.getLogger(__name__)

# the plan settings the recorded candidates depend on: a plan asking for others cannot reuse them
SCORED_SETTINGS = ("structure_score", "head_scope", "ffn_scope", "gqa_policy", "round_to", "uniform")
UNBOUNDED_METRICS = ("perplexity",)  # reported in their own units; the others are fractions, reported x100
MIN_INFORMATIVE_POINTS = 5.0  # how far the unpruned estimation model must beat a constant predictor


def points(metric_kind: str, value: float) -> float:
    return value if metric_kind in UNBOUNDED_METRICS else 100.0 * value


def drop_in_points(metric_kind: str, reference: float, value: float) -> float:
    """How much worse `value` is than `reference`, in points (positive = worse)."""
    sign = 1.0 if GREATER_IS_BETTER[metric_kind] else -1.0
    return sign * (points(metric_kind, reference) - points(metric_kind, value))


MIN_HOLDOUT = 8


def holdout_size(train_rows: int, examples: int) -> int:
    """Rows to hold out: `examples`, at most a quarter of the training rows; 0 when that leaves fewer than 8."""
    count = min(examples, train_rows // 4)
    return count if count >= MIN_HOLDOUT else 0


def skipped(reason: str) -> dict:
    """The record of a plan search that could not run; `choose_ratios` then keeps the fixed ratios and says why."""
    log.warning("candidate plans are not scored: %s; the plan uses the fixed --head_ratio / --ffn_ratio", reason)
    return {"skipped": reason}


def split_holdout(train_ds, examples: int, seed: int):
    """(estimation rows, held-out rows): at most a quarter of the rows is held out, drawn with `seed`."""
    count = holdout_size(len(train_ds), examples)
    if not count:
        raise LightPeftError(f"--plan_search_examples needs at least {MIN_HOLDOUT} held-out rows, at most a quarter "
                             f"of the training set; this task has {len(train_ds)} rows")
    shuffled = train_ds.shuffle(seed=seed)
    return shuffled.select(range(count, len(shuffled))), shuffled.select(range(count))


def split_for_search(train_ds, examples: int, seed: int, task_kind: str):
    """(estimation rows, held-out rows or None, record of a search that cannot run or None) for
    `--plan_search_examples examples`: what every estimation (`lightpeft estimate`, `LightPeft.prune`) holds out."""
    if not examples:
        return train_ds, None, None
    if task_kind == "qa":  # its metric needs answer texts of whole examples, not windows
        return train_ds, None, skipped("extractive QA is not scored on held-out rows yet")
    if not holdout_size(len(train_ds), examples):
        return train_ds, None, skipped(f"{len(train_ds)} training rows are too few to hold out {MIN_HOLDOUT}")
    return (*split_holdout(train_ds, examples, seed), None)


def score_candidates(trainer, gates: Gates, holdout, head_scores: torch.Tensor, ffn_scores: torch.Tensor,
                     cfg: PlanConfig, ratios: list[float], group_size: int, metric_kind: str) -> dict:
    """Held-out metric and loss of every (head ratio, FFN ratio) in `ratios` x `ratios`, and of the unpruned
    model; the gates are restored afterwards."""
    key = "eval_" + MAIN_METRIC[metric_kind]
    saved = (gates.head.detach().clone(), gates.ffn.detach().clone())
    layers, heads = gates.head.shape
    everything = ([list(range(heads))] * layers, [list(range(gates.ffn.shape[1]))] * layers)

    def evaluate(kept_heads, kept_neurons) -> dict:
        set_binary(gates, kept_heads, kept_neurons)
        loader = trainer.get_eval_dataloader(holdout)
        metrics = trainer.evaluation_loop(loader, "plan candidates", metric_key_prefix="eval").metrics
        if key not in metrics:
            raise LightPeftError(f"the held-out evaluation gave no {key}; --max_metric_drop needs a task whose metric "
                                 "is computed per batch of rows (classification, regression, causal LM)")
        return {"metric": float(metrics[key]), "loss": float(metrics.get("eval_loss", float("nan")))}

    try:
        reference = evaluate(*everything)
        reference["chance"] = constant_predictor_metric(holdout, metric_kind)
        candidates = []
        grid = list(itertools.product(ratios, ratios))
        for done, (head_ratio, ffn_ratio) in enumerate(grid, 1):
            trial = dataclasses.replace(cfg, head_ratio=head_ratio, ffn_ratio=ffn_ratio)
            scores = evaluate(*keep_structure(head_scores, ffn_scores, trial, group_size))
            candidates.append({"head_ratio": head_ratio, "ffn_ratio": ffn_ratio, **scores,
                               "predicted_drop": drop_in_points(metric_kind, reference["metric"], scores["metric"])})
            if done % max(1, len(grid) // 4) == 0 or done == len(grid):
                log.info("plan candidates: %d/%d scored on %d held-out rows", done, len(grid), len(holdout))
    finally:
        with torch.no_grad():
            gates.head.copy_(saved[0])
            gates.ffn.copy_(saved[1])
    return {"metric": MAIN_METRIC[metric_kind], "metric_kind": metric_kind, "examples": len(holdout),
            "reference": reference, "settings": scored_settings(cfg),
            "candidates": candidates}


def constant_predictor_metric(holdout, metric_kind: str) -> float | None:
    """The metric of always predicting the held-out rows' majority class (None where no such baseline applies)."""
    # the names transformers' collators take labels from (lightpeft's features: `labels`; a user's: often `label`)
    column = next((name for name in ("labels", "label", "label_ids") if name in holdout.column_names), None)
    if metric_kind in ("pearson", "perplexity", "squad") or column is None:
        return None
    labels = np.asarray(holdout[column])
    majority = np.bincount(labels).argmax()
    logits = np.zeros((len(labels), int(labels.max()) + 1))
    logits[:, majority] = 1.0
    return float(compute_metrics(metric_kind, logits, labels)[MAIN_METRIC[metric_kind]])


def informative(search: dict) -> bool:
    """Whether the unpruned estimation model beats a constant predictor clearly enough to rank candidates."""
    chance = search["reference"].get("chance")
    if chance is None:
        return True
    return drop_in_points(search["metric_kind"], search["reference"]["metric"], chance) >= MIN_INFORMATIVE_POINTS


def scored_settings(cfg: PlanConfig) -> dict:
    return {name: getattr(cfg, name) for name in SCORED_SETTINGS}


def check_candidates_fit(search: dict | None, cfg: PlanConfig) -> None:
    if not search:
        raise LightPeftError("--max_metric_drop needs candidate plans scored during estimation: re-run the estimate "
                             "with --plan_search_examples > 0 (e.g. 256)")
    asked = scored_settings(cfg)
    recorded = {**asked, **search["settings"]}  # estimates scored before a setting existed had its default
    if asked != recorded:
        differing = ", ".join(f"--{k} {asked[k]} (scored: {recorded[k]})" for k in asked if asked[k] != recorded[k])
        raise LightPeftError(f"the estimate scored its candidate plans with other settings: {differing}; re-run "
                             "the estimate with these flags or drop them")


def choose_ratios(search: dict, cfg: PlanConfig, cost) -> tuple[PlanConfig, dict]:
    """The PlanConfig of the cheapest candidate (by `cost(PlanConfig)`) within `cfg.max_metric_drop`, and a record
    of the choice. Ratio (0, 0) always qualifies when it was scored, since it is the unpruned structure. When the
    estimation could not score candidates (extractive QA, too few rows), the fixed ratios stay and the record
    says why."""
    if search and "skipped" in search:
        return cfg, {"max_metric_drop": cfg.max_metric_drop, "skipped": search["skipped"],
                     "head_ratio": cfg.head_ratio, "ffn_ratio": cfg.ffn_ratio}
    check_candidates_fit(search, cfg)
    base_record = {"max_metric_drop": cfg.max_metric_drop, "metric": search["metric"], "examples": search["examples"],
                   "reference_metric": search["reference"]["metric"], "chance_metric": search["reference"].get("chance")}
    if not informative(search):
        log.warning("the estimation model is not yet better than a constant predictor on the held-out rows "
                    "(%s %.3f vs %.3f): no candidate can be trusted, so no head or FFN neuron is pruned; raise "
                    "--min_estimate_steps (or --estimate_fraction) for a plan that prunes the backbone",
                    search["metric"], search["reference"]["metric"], search["reference"]["chance"])
        return dataclasses.replace(cfg, head_ratio=0.0, ffn_ratio=0.0), {
            **base_record, "uninformative": True, "head_ratio": 0.0, "ffn_ratio": 0.0}
    options = []
    for candidate in search["candidates"]:
        milder = [c["predicted_drop"] for c in search["candidates"]
                  if c["head_ratio"] <= candidate["head_ratio"] and c["ffn_ratio"] <= candidate["ffn_ratio"]]
        candidate = {**candidate, "predicted_drop": max(milder)}
        if candidate["predicted_drop"] <= cfg.max_metric_drop or candidate["head_ratio"] == candidate["ffn_ratio"] == 0:
            trial = dataclasses.replace(cfg, head_ratio=candidate["head_ratio"], ffn_ratio=candidate["ffn_ratio"])
            # cheapest first; among equals the smaller predicted drop, then the smaller ratios
            options.append((cost(trial), candidate["predicted_drop"], candidate["head_ratio"] + candidate["ffn_ratio"],
                            trial, candidate))
    if not options:
        raise LightPeftError(f"no candidate plan is predicted within --max_metric_drop {cfg.max_metric_drop} points "
                             "(and ratio 0 was not scored); add 0 to --candidate_ratios or allow a larger drop")
    _, _, _, chosen, candidate = min(options, key=lambda o: o[:3])
    record = {**base_record, "uninformative": False, "predicted_metric": candidate["metric"],
              "predicted_drop": candidate["predicted_drop"], "head_ratio": chosen.head_ratio,
              "ffn_ratio": chosen.ffn_ratio}
    return chosen, record
