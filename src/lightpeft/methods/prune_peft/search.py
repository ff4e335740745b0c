"""PrunePEFT's search: train the supernet round by round, score every remaining module with its partition's
criteria, remove the top k, stop at the budget; the survivors are the plan (`method="prune-peft"`), which the train
stage retrains from scratch.

Every round builds a fresh model from the base checkpoint with the surviving modules, all starting as the identity
(`--reinit fresh`, the paper's re-initialisation between rounds), or continuing from the previous round's weights
(`--reinit keep`). Under torchrun every rank trains its shard, the statistics are all-reduced and every rank takes
the same decisions (checked); the stage writes on rank 0 only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from lightpeft.core.build import build_model
from lightpeft.core.models import BaseModel
from lightpeft.core.peft_kinds import PeftSettings
from lightpeft.core.peft_modules import export_state, import_state
from lightpeft.core.plan import Plan
from lightpeft.core.training import TrainerParts, make_trainer
from lightpeft.errors import LightPeftError
from lightpeft.methods.prune_peft import combine, partitions
from lightpeft.methods.prune_peft.config import SearchConfig
from lightpeft.methods.prune_peft.criteria import RoundStatistics, score_modules
from lightpeft.methods.prune_peft.supernet import (
    Supernet,
    build_supernet,
    counted_plan,
    start_as_identity,
    vanilla_params,
)

log = logging.getLogger(__name__)


@dataclass
class SearchData:
    """What the rounds train on (the stage prepares it): a factory of fresh seeded bases and the tokenized rows."""

    make_base: Callable[[], BaseModel]
    train_ds: object
    tokenizer: object
    parts: TrainerParts


@dataclass
class SearchOutcome:
    plan: Plan
    rounds: list[dict]
    assignment: dict[str, list[str]]  # partition -> criteria
    assignment_source: str
    record: dict  # budget, supernet, schedule, times (search.json)
    warmup: dict | None = None  # counts and turns, when the warm-up ran
    survivors: list[list[str]] = field(default_factory=list)  # before each round, and at the end


def resolve_budget(cfg: SearchConfig, supernet: Supernet, base: BaseModel, peft_cfg: PeftSettings) -> int:
    if cfg.budget_params is not None:
        budget, what = int(cfg.budget_params), f"--budget_params {cfg.budget_params}"
    else:
        fraction = cfg.budget_fraction if cfg.budget_fraction is not None else 1.0
        budget = math.floor(fraction * vanilla_params(base, peft_cfg))
        what = f"--budget_fraction {fraction} ({budget:,} parameters)"
    smallest = min(c.params for c in supernet.candidates)
    if budget >= supernet.params:
        raise LightPeftError(f"{what} is not below the supernet's {supernet.params:,} PEFT parameters, so nothing would "
                             "be pruned; lower the budget")
    if budget < smallest:
        raise LightPeftError(f"{what} is below the smallest candidate module ({smallest:,} parameters); raise it")
    return budget


def stratified_subset(ds, size: int, seed: int):
    """`size` rows of `ds` keeping each class's share (classification); a seeded random sample otherwise."""
    if size >= len(ds):
        return ds
    rng = random.Random(seed)
    labels = ds["labels"] if "labels" in ds.column_names else None
    if labels is not None and all(isinstance(v, int) for v in labels):
        by_label: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_label.setdefault(label, []).append(index)
        picked = []
        for rows in by_label.values():
            rng.shuffle(rows)
            picked += rows[: max(1, round(size * len(rows) / len(ds)))]
    else:
        picked = rng.sample(range(len(ds)), size)
    return ds.select(sorted(picked))


def train_round(data: SearchData, supernet: Supernet, kept: list[str], rows, args, cfg: SearchConfig,
                epochs: float, steps: int | None, state: dict | None = None):
    """One round: a fresh model with `kept`, trained on `rows`; -> (module stats, PEFT state, round record)."""
    model = build_model(data.make_base(), supernet.plan_of(kept))
    start_as_identity(model)
    if state is not None:
        import_state(model, state)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lightpeft-search-") as scratch:
        round_args = dataclasses.replace(args, output_dir=scratch, num_train_epochs=epochs, max_steps=steps or -1,
                                         eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
        trainer = make_trainer(model, round_args, rows, None, data.tokenizer, data.parts)
        # after the Trainer put the model on its device: the running sums live there
        stats = RoundStatistics(model, {c: supernet.candidate(c).linears for c in kept}, cfg.threshold)
        trainer.add_callback(stats)
        trainer.train()
    stats.remove()
    stats.all_reduce()
    losses = [h["train_loss"] for h in trainer.state.log_history if "train_loss" in h]
    record = {"steps": trainer.state.global_step, "seconds": time.perf_counter() - start,
              "train_loss": losses[-1] if losses else None, "rows": len(rows)}
    return stats.module_stats(), export_state(model) if cfg.reinit == "keep" else None, record


def pruning_probabilities(cfg: SearchConfig, scores: dict, assignment: dict[str, list[str]],
                          partition: dict[str, str], seed: int) -> dict[str, float]:
    if cfg.combine == "random":
        return combine.random_order(list(assignment), seed)
    if cfg.combine == "block_dynamic":
        return combine.block_dynamic(scores, assignment, partition)
    return combine.eq1(scores, assignment)


def run_search(data: SearchData, peft_cfg: PeftSettings, cfg: SearchConfig, args,
               structure: Plan | None = None) -> SearchOutcome:
    """The search on the whole base, or on the backbone `structure` prunes (its heads and neurons are kept, its
    PEFT modules replaced by the searched ones: Light-PEFT's backbone pruning, then PrunePEFT's placement)."""
    start = time.perf_counter()
    base = data.make_base()
    method = "prune-peft" if structure is None else f"{structure.method}+prune-peft"
    supernet = build_supernet(base, peft_cfg, cfg, structure, method)
    budget = resolve_budget(cfg, supernet, base, peft_cfg)
    layers = supernet.num_layers
    partition = {c: partitions.partition_of(c, layers, cfg.depth_blocks) for c in supernet.names}
    all_partitions = partitions.partitions_of(supernet.names, layers, cfg.depth_blocks)
    assignment, source, warmup = choose_assignment(data, supernet, cfg, args, base, all_partitions, partition)
    k = cfg.prune_per_round or max(1, round(layers / 6))
    rows = stratified_subset(data.train_ds, max(1, round(cfg.search_data_fraction * len(data.train_ds))), args.seed)
    params = {c.name: c.params for c in supernet.candidates}
    log.info("search: %d candidate modules, %s PEFT parameters, budget %s; %d removed per round, %d training rows",
             len(params), f"{supernet.params:,}", f"{budget:,}", k, len(rows))
    remaining, rounds, survivors, state = list(supernet.names), [], [], None
    while sum(params[m] for m in remaining) > budget and len(remaining) > 1:
        if cfg.max_rounds and len(rounds) >= cfg.max_rounds:
            break
        survivors.append(list(remaining))
        stats, state, train = train_round(data, supernet, remaining, rows, args, cfg, cfg.round_epochs,
                                          cfg.round_steps, state)
        used = sorted({c for m in remaining for c in assignment[partition[m]]})
        scores = score_modules(stats, used)
        module_criteria = {m: assignment[partition[m]] for m in remaining}
        p = pruning_probabilities(cfg, scores, module_criteria, partition, args.seed + len(rounds))
        removed = []
        for m in combine.removal_order(p, remaining)[:k]:
            if len(removed) + 1 >= len(remaining):
                break
            removed.append(m)
            if sum(params[r] for r in remaining if r not in removed) <= budget:
                break
        check_same_on_all_ranks([supernet.names.index(m) for m in removed], len(supernet.names))
        before = sum(params[m] for m in remaining)
        remaining = [m for m in remaining if m not in removed]
        after = sum(params[m] for m in remaining)
        rounds.append({"round": len(rounds) + 1, "modules_before": survivors[-1], "params_before": before,
                       "train": train, "criteria": module_criteria, "scores": scores, "p": p, "removed": removed,
                       "params_after": after})
        log.info("search round %d: trained %d steps (%.1fs, loss %s); removed %s -> %d modules, %s PEFT parameters "
                 "(budget %s)", len(rounds), train["steps"], train["seconds"], _fmt(train["train_loss"]),
                 ", ".join(removed), len(remaining), f"{after:,}", f"{budget:,}")
    survivors.append(list(remaining))
    final = sum(params[m] for m in remaining)
    if final > budget:
        log.warning("search stopped after %d rounds above the budget (%s > %s PEFT parameters)", len(rounds),
                    f"{final:,}", f"{budget:,}")
    plan = counted_plan(supernet, remaining, base)
    record = {"budget_params": budget, "budget_met": final <= budget, "supernet_params": supernet.params,
              "supernet_modules": supernet.names, "candidate_params": params, "final_params": final,
              "kept_modules": remaining, "prune_per_round": k, "rounds": len(rounds), "search_rows": len(rows),
              "blocks": partitions.blocks(layers, cfg.depth_blocks), "partition_of": partition,
              "seconds": time.perf_counter() - start,
              "round_seconds": sum(r["train"]["seconds"] for r in rounds),
              "warmup_seconds": warmup["seconds"] if warmup else 0.0}
    plan.ratios = {**(structure.ratios if structure is not None else {}), "search": {k_: record[k_] for k_ in ("budget_params", "budget_met", "supernet_params",
                                                        "final_params", "rounds", "prune_per_round")},
                   "search_config": dataclasses.asdict(cfg), "assignment_source": source}
    return SearchOutcome(plan, rounds, assignment, source, record, warmup, survivors)


def choose_assignment(data: SearchData, supernet: Supernet, cfg: SearchConfig, args, base: BaseModel,
                      all_partitions: list[str], partition: dict[str, str]):
    """-> (partition -> criteria, where it came from, warm-up record or None)."""
    if cfg.assignment_file:
        table = partitions.load_assignment(cfg.assignment_file, all_partitions, base.fingerprint, supernet.num_layers,
                                           cfg.depth_blocks)
        return table, f"file {cfg.assignment_file}", None
    if cfg.criteria_assignment == "paper":
        return partitions.paper_assignment(all_partitions), "paper", None
    if cfg.criteria_assignment == "uniform" or cfg.combine == "random":
        return partitions.uniform_assignment(all_partitions, cfg.criteria), "uniform", None
    warmup = run_warmup(data, supernet, cfg, args, all_partitions, partition)
    return partitions.assign_by_frequency(warmup["counts"], all_partitions), "warmup", warmup


def run_warmup(data: SearchData, supernet: Supernet, cfg: SearchConfig, args, all_partitions: list[str],
               partition: dict[str, str]) -> dict:
    """Single-criterion pruning on a small stratified subset; counts how often each criterion pruned where."""
    start = time.perf_counter()
    rows = stratified_subset(data.train_ds, cfg.warmup_samples, args.seed)
    counts = {c: {p: 0 for p in all_partitions} for c in cfg.criteria}
    turns = []
    log.info("search warm-up: %d criteria x %d turns of %g epochs on %d rows, %d modules pruned per turn",
             len(cfg.criteria), cfg.warmup_turns, cfg.warmup_epochs, len(rows), cfg.warmup_prune)
    for c in cfg.criteria:
        remaining = list(supernet.names)
        for turn in range(cfg.warmup_turns):
            if len(remaining) <= cfg.warmup_prune:
                break
            stats, _, train = train_round(data, supernet, remaining, rows, args, cfg, cfg.warmup_epochs, None)
            theta = score_modules(stats, [c])
            if len(set(theta[c].values())) == 1:  # it cannot tell the modules apart: any pick would be positional
                turns.append({"criterion": c, "turn": turn + 1, "removed": [], "scores": theta[c], "train": train})
                log.info("search warm-up: %s scores every module alike; it prunes nothing", c)
                break
            p = combine.eq1(theta, {m: [c] for m in remaining})
            removed = combine.removal_order(p, remaining)[: cfg.warmup_prune]
            check_same_on_all_ranks([supernet.names.index(m) for m in removed], len(supernet.names))
            for m in removed:
                counts[c][partition[m]] += 1
            remaining = [m for m in remaining if m not in removed]
            turns.append({"criterion": c, "turn": turn + 1, "removed": removed, "scores": theta[c], "train": train})
        log.info("search warm-up: %s pruned %s", c, {p: n for p, n in counts[c].items() if n})
    return {"counts": counts, "turns": turns, "rows": len(rows), "seconds": time.perf_counter() - start}


def check_same_on_all_ranks(indices: list[int], size: int) -> None:
    """Every rank must remove the same modules (their statistics were all-reduced); a mismatch is a broken launch.
    `size`: the number of candidates (the indices are padded to it, so every rank sends one shape)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        mine = torch.full((size,), -1, dtype=torch.long, device=device)
        mine[: len(indices)] = torch.tensor(indices, dtype=torch.long, device=device)
        reference = mine.clone()
        dist.broadcast(reference, src=0)
        if not torch.equal(reference, mine):
            raise LightPeftError("processes chose different modules to prune; launch with torchrun or accelerate launch")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"
