"""Peak live tensor bytes of training steps (`bench.live_memory`) and of inference (`latency.time_inference`), and
the batch they are measured on (`latency.longest_batch`)."""

import torch
from datasets import Dataset

from lightpeft import LightPeftTrainingArguments
from lightpeft.bench.latency import longest_batch, model_megabytes, time_inference
from lightpeft.bench.live_memory import train_live_peak, trainer_optimizer
from lightpeft.core.build import build_model, vanilla_plan
from lightpeft.core.peft_kinds import PeftSettings
from lightpeft.methods.light_peft.config import PlanConfig

from conftest import tiny_batch, tiny_model
from helpers import as_base, random_plan

MB = 2**20


def plan_model(pruned: bool):
    base = as_base(tiny_model(intermediate_size=128))
    plan = random_plan(base.model, PlanConfig(head_ratio=0.5, ffn_ratio=0.5)) if pruned else \
        vanilla_plan(base, PeftSettings())
    return build_model(base, plan)


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def test_training_peak_holds_weights_grads_and_optimizer_state_and_shrinks_with_pruning(tmp_path):
    args = LightPeftTrainingArguments(output_dir=str(tmp_path), use_cpu=True)
    batch = {**tiny_batch(batch=8, length=32), "labels": torch.arange(8) % 3}
    peaks = {}
    for pruned in (False, True):
        model = plan_model(pruned)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        result = train_live_peak(model, batch, trainer_optimizer(model, args), args)
        trainable = [p for p in model.parameters() if p.requires_grad]
        weights = nbytes([*model.parameters(), *model.buffers()])
        # weights + the batch, then each trainable parameter's gradient and AdamW's two moments
        floor = weights + nbytes(batch.values()) + 3 * nbytes(trainable)
        assert result["start_mb"] * MB == weights + nbytes(batch.values())
        assert result["peak_mb"] * MB > floor  # activations on top
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # learning rate 0
        peaks[pruned] = result["peak_mb"]
    assert peaks[True] < peaks[False]


def test_inference_live_memory_is_weights_plus_the_longest_batch():
    model = tiny_model()
    small = [tiny_batch(batch=2, length=8, seed=s) for s in range(4)]
    large = small[:3] + [tiny_batch(batch=2, length=48)]
    a, b = time_inference(model, small), time_inference(model, large)
    assert model_megabytes(model) < a["live_mb"] < b["live_mb"]


def test_longest_batch_takes_the_longest_rows():
    dataset = Dataset.from_dict({"input_ids": [[1] * n for n in (3, 9, 5, 7)], "label": [0, 1, 0, 1]})

    def collate(rows):
        width = max(len(r["input_ids"]) for r in rows)
        return {"input_ids": torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in rows]),
                "labels": torch.tensor([r.get("labels", -1) for r in rows])}

    batch = longest_batch(dataset, collate, 2, "cpu")
    assert batch["input_ids"].shape == (2, 9) and batch["input_ids"].sum() == 9 + 7
    assert longest_batch(dataset, collate, 6, "cpu")["input_ids"].shape == (6, 9)  # more rows than the split


def test_shape_only_arms_report_live_memory(tiny_model_dir):
    from lightpeft.bench.shapes import shape_arm

    spec = {"shape_only": str(tiny_model_dir), "seed": 0, "batch_size": 4, "seq_length": 16, "steps": 2,
            "infer_batch_sizes": [1, 2]}
    arms = {arm: shape_arm({**spec, "arm": arm}, PeftSettings(), PlanConfig(head_ratio=0.5, ffn_ratio=0.5))
            for arm in ("vanilla", "light-peft")}
    for result in arms.values():
        assert result["peak_train_live_mb"] > result["infer_live_mb"]["2"] > result["model_mb"]
    assert arms["light-peft"]["peak_train_live_mb"] < arms["vanilla"]["peak_train_live_mb"]
