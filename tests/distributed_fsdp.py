"""Run by tests/test_distributed.py under torchrun (or alone for the one-process reference): one backward of a tiny
BERT with LoRA on all six roles, every encoder layer and the model wrapped with FSDP2 (`fully_shard`, gloo on CPU),
each rank on its half of the batch. Saves, per LoRA module, the Taylor scores computed from the local `.grad`
shards (what estimation would read: half the units' A term, every unit's B term from half the outputs) and from the
gathered full tensors, and the gradients' types."""

import os
import sys

import torch
import torch.distributed as dist

from lightpeft.core import arch
from lightpeft.core.peft_kinds import PEFT_ROLES, lora_layers, wrap_with_lora
from lightpeft.methods.light_peft.importance import taylor_rank_scores

from conftest import tiny_batch, tiny_model

ROWS = 4


def lora_model():
    torch.manual_seed(0)
    model = tiny_model("bert", num_labels=2)
    peft_model = wrap_with_lora(model, arch.linear_names(model, PEFT_ROLES), 4, 8.0, 0.0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero B, so dL/dA is not zero
        for layer in lora_layers(peft_model).values():
            weight = layer.lora_B["default"].weight
            weight.copy_(torch.randn(weight.shape, generator=g) * 0.1)
    return peft_model.train()


def full(tensor):
    return tensor.full_tensor() if type(tensor).__name__ == "DTensor" else tensor


def scores(model) -> dict:
    out = {}
    for name, layer in lora_layers(model).items():
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        la, lga, lb, lgb = (t.to_local() if type(t).__name__ == "DTensor" else t
                            for t in (a.detach(), a.grad, b.detach(), b.grad))
        out[name] = {"grad_type": type(a.grad).__name__,
                     # the two terms of the score from this rank's shards: A rows (units) split, B rows (outputs) split
                     "local_a": (la * lga).mean(dim=1).abs(), "local_b": (lb * lgb).mean(dim=0).abs(),
                     "full_b": (full(b.detach()) * full(b.grad)).mean(dim=0).abs(),
                     "full": taylor_rank_scores(full(a.detach()), full(a.grad), full(b.detach()), full(b.grad))}
    return out


def main(out: str) -> None:
    batch, labels = tiny_batch(batch=ROWS, length=7), torch.tensor([0, 1, 1, 0])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    model = lora_model()
    rows = slice(None)
    if world > 1:
        from torch.distributed.fsdp import fully_shard

        dist.init_process_group("gloo")
        for layer in model.base_model.model.bert.encoder.layer:
            fully_shard(layer)
        fully_shard(model)
        rank = dist.get_rank()
        rows = slice(rank * ROWS // world, (rank + 1) * ROWS // world)  # mean of the halves' means = full mean
    model(**{k: v[rows] for k, v in batch.items()}, labels=labels[rows]).loss.backward()
    result = scores(model)
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save({"world_size": world, "scores": result}, os.path.join(out, f"fsdp_scores_{world}.pt"))
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
