"""One benchmark arm in its own process: `python -m lightpeft.bench.arm {train|infer|shape} SPEC.json RESULT.json`.

`train` runs vanilla PEFT (`lightpeft train`) or Light-PEFT (`lightpeft run`) into the spec's run directory and
records times and memory; `infer` rebuilds the trained run from the base checkpoint, counts FLOPs, measures the
peak live tensor bytes of training steps on the longest batch (so the timed training run carries no tracker),
optionally profiles a training step, merges LoRA into the weights (adapters stay) and times inference; `shape`
times a random-init model (see shapes.py). A fresh process per arm keeps the
arms from sharing allocator state, warm caches or a memory high-water mark.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from lightpeft import memory
from lightpeft.bench.config import SEARCH_ARMS, TRAINING_VARIANT_FLAGS, search_arm, split_variant
from lightpeft.bench.flops import forward_flops, train_step_flops
from lightpeft.bench.latency import batches_of, longest_batch, model_megabytes, time_inference
from lightpeft.bench.live_memory import train_live_peak, trainer_optimizer
from lightpeft.bench.profile import profile_training_step
from lightpeft.config import DataConfig, LightPeftTrainingArguments, ModelConfig, RunOptions
from lightpeft.core.peft_kinds import PeftSettings
from lightpeft.core.training import PAD_MULTIPLE
from lightpeft.errors import LightPeftError
from lightpeft.io import write_json
from lightpeft.methods.light_peft.config import EstimateConfig, PlanConfig
from lightpeft.stages.prepare import prepare
from lightpeft.stages.run import run
from lightpeft.stages.run_dir import load_pruned, read_run
from lightpeft.stages.train import train


def training_args_to_json(args: LightPeftTrainingArguments) -> dict:
    import dataclasses

    init = {f.name for f in dataclasses.fields(args) if f.init}
    return {k: v for k, v in args.to_dict().items() if k in init}


def _configs(spec: dict):
    c = spec["configs"]
    estimate_overrides, plan_overrides, training_overrides = split_variant(spec.get("plan_overrides", {}))
    if spec["arm"] == "vanilla" or spec["arm"] in SEARCH_ARMS:  # no estimation model to distill from
        training_overrides = {"distill_weight": 0.0}
    # an arm is one timed measurement: no checkpoints inside the timing, never resumed
    args = LightPeftTrainingArguments(**{**spec["training"], **training_overrides, "output_dir": spec["run_dir"],
                                         "seed": spec["seed"], "disable_tqdm": True, "save_strategy": "no"})
    return (ModelConfig(**c["ModelConfig"]), DataConfig(**c["DataConfig"]), PeftSettings(**c["PeftSettings"]),
            EstimateConfig(**{**c["EstimateConfig"], **estimate_overrides}),
            PlanConfig(**{**c["PlanConfig"], **plan_overrides}), args)


PEER_DATA_FLAGS = ("task", "max_seq_length", "max_train_samples", "max_eval_samples", "split_seed")
PEER_PEFT_FLAGS = ("lora_r", "lora_alpha", "lora_dropout")


def peer_arguments(spec: dict) -> dict:
    """The flags of `bench/peer.py` (PeerArguments and TrainingArguments) for one repeat: the bench's data, LoRA
    and training settings. Settings the plain script does not have are refused rather than silently dropped."""
    data, peft = spec["configs"]["DataConfig"], spec["configs"]["PeftSettings"]
    defaults = DataConfig()
    other = [k for k, v in data.items() if k not in PEER_DATA_FLAGS and v != getattr(defaults, k)]
    if other or peft["peft"] != "lora" or sorted(peft["vanilla_targets"]) != ["q", "v"]:
        raise LightPeftError(f"the peer arm is plain LoRA q,v on a text/label task; it cannot follow "
                             f"{', '.join(['--' + k for k in other] or ['--peft / --vanilla_targets'])}: drop "
                             "`peer` from --arms")
    return {"model_name_or_path": spec["configs"]["ModelConfig"]["model_name_or_path"],
            **{k: data[k] for k in PEER_DATA_FLAGS}, **{k: peft[k] for k in PEER_PEFT_FLAGS},
            "threads": spec.get("threads"),
            **{k: v for k, v in spec["training"].items() if k not in TRAINING_VARIANT_FLAGS},  # baselines never distill
            "output_dir": spec["run_dir"], "seed": spec["seed"], "disable_tqdm": True}


def train_arm(spec: dict) -> dict:
    model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args = _configs(spec)
    prepared = prepare(model_cfg, data_cfg)
    memory.release()
    baseline = memory.rss_mb()  # process with libraries and tokenized data, before any model exists
    if spec["arm"] == "vanilla":
        result = train(model_cfg, data_cfg, peft_cfg, args, prepared=prepared, overwrite=True, resume=False)
        estimate_seconds = 0.0
    elif spec["arm"] in SEARCH_ARMS:
        method, search_cfg = search_arm(spec["arm"], spec["configs"].get("SearchConfig", {}))
        result = run(model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args,
                     RunOptions(overwrite_output_dir=True, method=method), prepared=prepared, search_cfg=search_cfg)
        estimate_seconds = result.summary["search_seconds"]  # the estimate too, for the combination
    else:
        result = run(model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args,
                     RunOptions(overwrite_output_dir=True, resume=False), prepared=prepared)
        estimate_seconds = result.summary["estimate_seconds"]
    summary = result.summary
    # a distillation teacher's weights are resident through training beside the student's (its forward runs under
    # no_grad, so its activations are transient); the measured RSS starts after it was built, so add them here
    weights_mb = model_megabytes(result.model) + ((summary.get("distillation") or {}).get("teacher_mb") or 0.0)
    train_seconds = summary["train_seconds_excluding_eval"]
    # rows the optimizer steps consumed (not rows x epochs: `--train_schedule remaining` runs fewer steps)
    examples = summary["optimizer_steps"] * args.per_device_train_batch_size * args.gradient_accumulation_steps \
        * max(1, args.world_size)
    return {
        "arm": spec["arm"], "seed": spec["seed"], "run_dir": spec["run_dir"], "load_before": spec.get("load_before"),
        "load_after": os.getloadavg()[0], "plan_ratios": summary.get("plan_ratios"),
        "best_metric": summary["best_metric"], "final_metric": summary["final_metric"], "metric": summary["metric"],
        "greater_is_better": summary.get("greater_is_better", True),
        "train_seconds": train_seconds, "estimate_seconds": estimate_seconds,
        "end_to_end_seconds": train_seconds + estimate_seconds,
        "train_throughput": examples / train_seconds,
        "baseline_rss_mb": baseline, "peak_train_rss_mb": summary["peak_rss_mb"],
        "peak_is_stage_only": summary.get("peak_is_stage_only"),
        # CPU: weights + what the training stage allocated on top (its peak RSS over its starting RSS); counting
        # the weights by their bytes keeps allocator leftovers of model loading and pruning out of the figure
        "train_memory_mb": summary["peak_cuda_mb"] if summary["peak_cuda_mb"] is not None
        else weights_mb + summary["peak_rss_mb"] - summary["start_rss_mb"],
        "train_weights_mb": weights_mb,
        "foundation_params": summary["foundation_params"], "trainable_params": summary["trainable_params"],
        "plan_counts": summary["plan_counts"], "environment": summary["environment"],
    }


def infer_arm(spec: dict) -> dict:
    model_cfg, data_cfg, _, _, _, args = _configs(spec)
    prepared = prepare(model_cfg, data_cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from transformers import DataCollatorWithPadding

    collator = prepared.trainer_parts().collator  # the task's own: pads labels (causal LM with -100)
    # inference batches hold model inputs only, which plain padding fits for every kind
    inputs_collator = DataCollatorWithPadding(prepared.tokenizer, pad_to_multiple_of=PAD_MULTIPLE)
    model = load_pruned(model_cfg.model_name_or_path, spec["run_dir"]).to(device)
    train_batch = batches_of(prepared.train_ds, collator, args.per_device_train_batch_size, 0, device,
                             labels=True)[0]
    result = {"arm": spec["arm"], "seed": spec["seed"]}
    bs = train_batch["input_ids"].shape[0]
    step = train_step_flops(model, train_batch)
    result["train_step_flops_per_example"] = {k: v / bs for k, v in step.items()}
    longest = longest_batch(prepared.train_ds, collator, args.per_device_train_batch_size, device, labels=True)
    result["train_live"] = train_live_peak(model, longest, trainer_optimizer(model, args), args)
    # a distilling run also holds its teacher's weights through training (not rebuilt here: its forward runs under
    # no_grad, so what it adds beyond its weights is transient)
    result["teacher_weights_mb"] = (read_run(spec["run_dir"]).get("distillation") or {}).get("teacher_mb") or 0.0
    result["peak_train_live_mb"] = result["train_live"]["peak_mb"] + result["teacher_weights_mb"]
    del longest
    if spec.get("profile"):
        result["profile"] = profile_training_step(model, prepared.train_ds, collator, args.per_device_train_batch_size)
    if spec.get("export_inference"):
        result.update(_deployment_forms(spec, model, prepared, collator, device))
    if hasattr(model, "merge_and_unload"):  # deployment form: LoRA folded into the (pruned) weights; adapters stay
        model = model.merge_and_unload()
    result["forward_flops_per_example"] = forward_flops(model, train_batch) / bs
    result["model_mb"] = model_megabytes(model)
    result["inference"] = {}
    for batch_size in spec["infer_batch_sizes"]:
        batches = batches_of(prepared.eval_ds, inputs_collator, batch_size, spec["infer_examples"], device)
        timing = time_inference(model, batches)
        timing["memory_mb"] = timing["peak_cuda_mb"] if timing["peak_cuda_mb"] is not None \
            else result["model_mb"] + timing["activation_rss_mb"]
        result["inference"][str(batch_size)] = timing
    result["infer_live_mb"] = {size: timing["live_mb"] for size, timing in result["inference"].items()}
    return result


def _timed_forms(model, prepared, collator, device, spec) -> dict:
    out = {}
    for batch_size in spec["infer_batch_sizes"]:
        timing = time_inference(model, batches_of(prepared.eval_ds, collator, batch_size, spec["infer_examples"],
                                                  device))
        timing["memory_mb"] = timing["peak_cuda_mb"] if timing["peak_cuda_mb"] is not None \
            else model_megabytes(model) + timing["activation_rss_mb"]
        out[str(batch_size)] = timing
    return out


def _deployment_forms(spec: dict, model, prepared, collator, device) -> dict:
    """Inference of the run as trained (PEFT unmerged, on the rebuilt model) and of its `lightpeft export`
    (self-contained, LoRA merged, loaded with one call), plus the export's size on disk."""
    from lightpeft.stages.export import export_run, load_exported

    unmerged = _timed_forms(model, prepared, collator, device, spec)
    export_dir = Path(spec["run_dir"]) / "export"
    export_run(spec["run_dir"], export_dir, base=spec["configs"]["ModelConfig"]["model_name_or_path"])
    exported = load_exported(export_dir).to(device)
    forms = {"unmerged_inference": unmerged,
             "export_inference": _timed_forms(exported, prepared, collator, device, spec),
             "export_mb_on_disk": sum(f.stat().st_size for f in export_dir.rglob("*") if f.is_file()) / 2**20,
             "run_dir_mb_on_disk": sum(f.stat().st_size for f in Path(spec["run_dir"]).rglob("*")
                                       if f.is_file() and "export" not in f.relative_to(spec["run_dir"]).parts
                                       and "estimate" not in f.relative_to(spec["run_dir"]).parts) / 2**20}
    del exported
    return forms


def main(argv: list[str]) -> int:
    mode, spec_path, out_path = argv
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if mode == "shape":
        from lightpeft.bench.shapes import shape_arm

        _, _, peft_cfg, _, plan_cfg, _ = _configs(spec)
        result = shape_arm(spec, peft_cfg, plan_cfg)
    else:
        result = train_arm(spec) if mode == "train" else infer_arm(spec)
    write_json(out_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
