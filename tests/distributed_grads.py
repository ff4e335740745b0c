"""Run by tests/test_distributed.py under torchrun: one optimizer step per setting (grad_probe), rank 0 saves the
gradients DDP all-reduced, to be compared with one process on the same 8 rows."""

import os
import sys

import torch

from grad_probe import ROWS, step_grads

# (kind, stage, l1_coef): both loss paths (mean losses, causal LM's token count), with and without L1
SETTINGS = [("classification", "estimation", 0.0), ("classification", "estimation", 0.05),
            ("classification", "training", 0.0), ("causal_lm", "estimation", 0.0), ("causal_lm", "estimation", 0.05)]


def main(out: str) -> None:
    world = int(os.environ["WORLD_SIZE"])
    results = {}
    for kind, stage, l1_coef in SETTINGS:
        for accumulation in (1, 2):
            batch = ROWS // (world * accumulation)
            results[kind, stage, l1_coef, accumulation] = step_grads(kind, stage, batch, accumulation,
                                                                     os.path.join(out, "trainer"), l1_coef=l1_coef)
    if os.environ["RANK"] == "0":
        torch.save({"world_size": world, "results": results}, os.path.join(out, "grads.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
