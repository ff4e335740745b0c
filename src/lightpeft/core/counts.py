"""Parameter and FLOP counts of a plan, from a weightless (meta-device) model: before / after pruning, and the
training-step cost model (forward in every block, backward from the top down to the lowest trainable block).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from transformers import Conv1D

from lightpeft.core import arch, heads
from lightpeft.core.heads import meta_task_model
from lightpeft.core.peft_kinds import get_kind
from lightpeft.core.plan import Plan
from lightpeft.core.surgery import prune_backbone


def block_costs(plan: Plan, config, seq_length: int, kind: str = "classification") -> list[float]:
    """Forward FLOPs per token of each block of the pruned model (projections + attention matmuls); `kind`: the
    task kind whose model class the plan was made on (see `heads`)."""
    model = prune_backbone(heads.meta_task_model(config, kind), plan)
    costs = []
    for layer, block in enumerate(arch.layer_modules(model)):
        weights = sum(m.weight.numel() for m in block.modules() if isinstance(m, (nn.Linear, Conv1D)))
        costs.append(2.0 * weights + 4.0 * seq_length * len(plan.heads[layer]) * plan.head_size)
    return costs


def train_step_cost(costs: list[float], lowest_trainable_block: int) -> float:
    return sum(costs) + sum(costs[lowest_trainable_block:])


def lowest_peft_block(plan: Plan) -> int:
    return min((entry["layer"] for entry in plan.peft_modules.values()), default=plan.num_layers)


def foundation_params(plan: Plan, config, kind: str = "classification") -> int:
    model = prune_backbone(heads.meta_task_model(config, kind), plan)
    return sum(p.numel() for p in model.base_model.parameters())


def count_plan(plan: Plan, config, estimate_modules: dict[str, tuple[str, int]] | None = None,
               kind: str = "classification") -> dict:
    """Parameter and linear-FLOP counts before/after pruning, from a weightless (meta-device) task model of `kind`
    (the class fixes the PEFT module names and what the backbone holds, e.g. BERT's QA model has no pooler).
    `estimate_modules`: the full-size PEFT modules the plan was chosen from, name -> (PEFT kind, units)."""
    model = meta_task_model(config, kind)
    before = _structure_counts(model, estimate_modules or {})
    prune_backbone(model, plan)
    after = _structure_counts(model, {n: (e["kind"], len(e["units"])) for n, e in plan.peft_modules.items()})
    return {
        "foundation_params_before": before["foundation"],
        "foundation_params_after": after["foundation"],
        "foundation_pruned_fraction": 1 - after["foundation"] / before["foundation"],
        "layer_linear_flops_per_token_before": before["flops"],
        "layer_linear_flops_per_token_after": after["flops"],
        "peft_params_estimate": before["peft"],
        "peft_params_after": after["peft"],
        "peft_modules_after": len(plan.peft_modules),
        "counted_train_speedup_seq128": _counted_train_speedup(plan, config, kind),
        "heads_kept": sum(map(len, plan.heads)),
        "ffn_neurons_kept": sum(map(len, plan.ffn)),
    }


def _counted_train_speedup(plan: Plan, config, kind: str) -> float:
    """Training-step FLOPs of PEFT on the unpruned model (backward to block 0) over this plan's (see budget.py)."""
    full = dataclasses.replace(plan, heads=[list(range(plan.num_heads))] * plan.num_layers,
                               ffn=[list(range(plan.ffn_size))] * plan.num_layers,
                               kv_heads=[list(range(plan.kv_head_count))] * plan.num_layers)
    before = train_step_cost(block_costs(full, config, 128, kind), 0)
    return before / train_step_cost(block_costs(plan, config, 128, kind), lowest_peft_block(plan))


def _structure_counts(model, units: dict[str, tuple[str, int]]) -> dict:
    backbone = model.base_model
    layers = backbone.get_submodule(arch.get_arch(model).layers)
    linear_weights = sum(m.weight.numel() for m in layers.modules() if isinstance(m, (torch.nn.Linear, Conv1D)))
    peft_params = sum(count * get_kind(kind).unit_params(model.get_submodule(name))
                      for name, (kind, count) in units.items())
    return {"foundation": sum(p.numel() for p in backbone.parameters()), "flops": 2 * linear_weights,
            "peft": peft_params}
