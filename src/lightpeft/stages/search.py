"""The search stage (`lightpeft search`): PrunePEFT's search of which PEFT modules go where, written as a search
directory whose plan.json `lightpeft train --plan_path` retrains from scratch.

Search directory (JSON + PNG, no weights):
  plan.json          the searched plan (`method: prune-peft`; LoRA and adapters mixed)
  search.json        budget, supernet, schedule, times, kept modules, the configs
  assignment.json    which criteria scored which partition (reusable: `--criteria_assignment DIR/assignment.json`)
  rounds/NN.json     each round: modules before, training, every criterion's scores, p, removed modules
  warmup.json        the warm-up's pruning counts and turns (when it ran)
  survivors.png      which module kinds survive in which layers, round by round
  summary.md         one line per round
"""

from __future__ import annotations

import logging
from pathlib import Path

from lightpeft.config import DataConfig, LightPeftTrainingArguments, ModelConfig, to_dict
from lightpeft.core.peft_kinds import PeftSettings
from lightpeft.core.plan import Plan
from lightpeft.io import write_json, write_text
from lightpeft.methods.prune_peft.config import SearchConfig
from lightpeft.methods.prune_peft.figures import plot_survivors
from lightpeft.methods.prune_peft.partitions import ASSIGNMENT_FILE, save_assignment
from lightpeft.methods.prune_peft.search import SearchData, SearchOutcome, run_search
from lightpeft.report import markdown_table
from lightpeft.stages.outputs import claimed_output_dir, is_main_process, stage_inputs, staging
from lightpeft.stages.prepare import Prepared, load_task_base, prepare

log = logging.getLogger(__name__)

SEARCH_SCHEMA_VERSION = 1
SEARCH_FILE = "search.json"


def search(model_cfg: ModelConfig, data_cfg: DataConfig, peft_cfg: PeftSettings, search_cfg: SearchConfig,
           args: LightPeftTrainingArguments, prepared: Prepared | None = None, save: bool = True,
           overwrite: bool = False, structure: Plan | None = None) -> SearchOutcome:
    """Search stage; writes `args.output_dir` (a search directory) when `save`. Returns the outcome (`.plan`).
    `structure`: search on the backbone this plan prunes (e.g. Light-PEFT's), not on the whole base."""
    if not save:
        return _search(model_cfg, data_cfg, peft_cfg, search_cfg, args, prepared, structure)
    inputs = stage_inputs(model_cfg, data_cfg, criteria_assignment=search_cfg.assignment_file)
    with claimed_output_dir(args.output_dir, overwrite, inputs) as out:
        outcome = _search(model_cfg, data_cfg, peft_cfg, search_cfg, args, prepared, structure)
        with staging(out, "search") as stage_dir:
            if is_main_process():
                write_search_dir(stage_dir, outcome)
    return outcome


def _search(model_cfg, data_cfg, peft_cfg, search_cfg, args, prepared, structure) -> SearchOutcome:
    prepared = prepared or prepare(model_cfg, data_cfg)
    data = SearchData(lambda: load_task_base(model_cfg, prepared.task, seed=args.seed), prepared.train_ds,
                      prepared.tokenizer, prepared.trainer_parts())
    outcome = run_search(data, peft_cfg, search_cfg, args, structure)
    outcome.record["configs"] = to_dict(model_cfg, data_cfg, peft_cfg, search_cfg)
    return outcome


def write_search_dir(directory: Path, outcome: SearchOutcome) -> None:
    """The search directory's files (see the module docstring) into the existing `directory`."""
    plan = outcome.plan
    plan.save(directory / "plan.json")
    save_assignment(directory / ASSIGNMENT_FILE, outcome.assignment, outcome.assignment_source, plan.base_fingerprint,
                    plan.model_type, plan.num_layers, outcome.warmup["counts"] if outcome.warmup else None,
                    len(outcome.record["blocks"]))
    write_json(directory / SEARCH_FILE, {"schema_version": SEARCH_SCHEMA_VERSION, **outcome.record,
                                         "assignment_source": outcome.assignment_source,
                                         "assignment": outcome.assignment, "survivors": outcome.survivors})
    (directory / "rounds").mkdir()
    for record in outcome.rounds:
        write_json(directory / "rounds" / f"{record['round']:02d}.json", record)
    if outcome.warmup:
        write_json(directory / "warmup.json", outcome.warmup)
    groups = list(dict.fromkeys(name.split("/")[0] for name in outcome.record["supernet_modules"]))
    plot_survivors(outcome.survivors, plan.num_layers, groups, directory / "survivors.png")
    write_text(directory / "summary.md", rounds_table(outcome) + "\n")


def rounds_table(outcome: SearchOutcome) -> str:
    rows = [[r["round"], len(r["modules_before"]), r["params_before"], r["train"]["steps"], r["train"]["seconds"],
             ", ".join(r["removed"]), r["params_after"]] for r in outcome.rounds]
    record = outcome.record
    rows.append(["final", len(record["kept_modules"]), record["final_params"], None, record["seconds"],
                 f"budget {record['budget_params']:,} ({'met' if record['budget_met'] else 'NOT met'})", None])
    return markdown_table(["round", "modules", "PEFT params", "steps", "seconds", "removed", "PEFT params after"],
                          rows)
