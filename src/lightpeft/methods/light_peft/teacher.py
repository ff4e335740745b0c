"""The distillation teacher of Light-PEFT's training stage: the estimation model exactly as it finished.

Why this teacher: estimation already trained it on the task (gates and PEFT modules on every linear of the unpruned
model), so it costs no extra training. Gates stay at their learned values, not binarised: that is the model
estimation trained and the best of it; the binarised twin is the pruned student's own starting point.

It is rebuilt from the untouched base and the estimate directory (PEFT + head weights, final gate values), so
`lightpeft train --plan_path P --estimate_dir E` distills as `lightpeft run` does; weights the checkpoint lacked
come from the base's seeded init, as in estimation with the same `--seed`.
"""

from __future__ import annotations

import torch
from torch import nn

from lightpeft.core.distill import freeze
from lightpeft.core.models import BaseModel
from lightpeft.core.peft_kinds import get_kind
from lightpeft.core.peft_modules import import_state
from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft import masks
from lightpeft.methods.light_peft.estimate import Estimate


def estimation_model(base: BaseModel, estimate: Estimate) -> nn.Module:
    """The estimation model of `estimate` on a fresh `base` (consumed): unpruned, the estimate's PEFT modules and
    head weights, gates at their learned values; frozen and in eval mode."""
    if base.fingerprint != estimate.fingerprint:
        raise LightPeftError("the estimate comes from another base checkpoint than --model_name_or_path; pass the "
                             "base the estimate was made on")
    meta = estimate.meta
    model = base.model
    targets = list(meta["module_roles"])  # the linears estimation put PEFT modules on
    peft_model = get_kind(meta["peft"]).inject(model, meta["peft_config"], targets, {})
    import_state(peft_model, estimate.peft_state)
    gates = masks.attach_gates(model, requires_grad=False).gates
    with torch.no_grad():
        gates.head.copy_(estimate.head_masks)
        gates.ffn.copy_(estimate.ffn_masks)
    return freeze(peft_model)
