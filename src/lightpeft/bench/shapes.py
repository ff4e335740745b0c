"""Shape-only benchmark: random-init models built from the paper's configs, pruned at given ratios.

Throughput and memory only, never accuracy: the weights are random, so the plan is drawn from random gate and
importance values (seeded) at the requested ratios; only the shapes it leaves matter for speed.
"""

from __future__ import annotations

import time

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, OPTConfig, RobertaConfig

from lightpeft import memory
from lightpeft.bench.flops import forward_flops, train_step_flops
from lightpeft.bench.latency import WARMUP_BATCHES, model_megabytes, time_inference
from lightpeft.bench.live_memory import train_live_peak
from lightpeft.core import arch
from lightpeft.core.build import build_model, vanilla_plan
from lightpeft.core.models import BaseModel
from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft.estimate import Estimate
from lightpeft.methods.light_peft.planning import make_plan

PRESETS = {
    "minilm": lambda: BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                 intermediate_size=1536),
    "roberta-base": lambda: RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12,
                                          num_attention_heads=12, intermediate_size=3072, max_position_embeddings=514,
                                          pad_token_id=1, type_vocab_size=1),
    "roberta-large": lambda: RobertaConfig(vocab_size=50265, hidden_size=1024, num_hidden_layers=24,
                                           num_attention_heads=16, intermediate_size=4096,
                                           max_position_embeddings=514, pad_token_id=1, type_vocab_size=1),
    "opt-1.3b": lambda: OPTConfig(vocab_size=50272, hidden_size=2048, num_hidden_layers=24, num_attention_heads=32,
                                  ffn_dim=8192, max_position_embeddings=2048, word_embed_proj_dim=2048,
                                  pad_token_id=1),
}


def shape_config(name: str):
    if name in PRESETS:
        config = PRESETS[name]()
    else:
        try:
            config = AutoConfig.from_pretrained(name)
        except (OSError, ValueError):
            raise LightPeftError(f"--shape_only {name!r} is neither a preset ({', '.join(PRESETS)}) nor a "
                                 "directory with config.json") from None
    config.num_labels = 2
    arch.get_arch(config)
    return config


def synthetic_estimate(model, peft_cfg, seed: int) -> Estimate:
    """Random gates and importances shaped like a real estimate of `model` (for shape-only plans)."""
    g = torch.Generator().manual_seed(seed)
    config = model.config
    layers, heads, ffn = arch.num_layers(model), arch.num_heads(config), arch.ffn_size(config)
    roles = arch.linear_roles(model, peft_cfg.estimate_roles())
    names = list(roles)
    method = peft_cfg.method_config()
    meta = {"base_fingerprint": "random-init", "model_type": config.model_type, "num_layers": layers,
            "num_heads": heads, "num_kv_heads": arch.num_kv_heads(config), "head_size": arch.head_size(config),
            "ffn_size": ffn, "peft": peft_cfg.peft, "peft_config": method,
            "module_names": names, "module_roles": {n: list(r) for n, r in roles.items()},
            "config": config.to_dict()}
    return Estimate(meta, torch.rand(layers, heads, generator=g), torch.rand(layers, ffn, generator=g), names,
                    torch.rand(len(names), generator=g), torch.rand(len(names), method["r"], generator=g), {})


def build_shape_model(name: str, arm: str, peft_cfg, plan_cfg, seed: int):
    config = shape_config(name)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    base = BaseModel(model=model, path=name, fingerprint="random-init", fresh_keys=[])
    plan = vanilla_plan(base, peft_cfg) if arm == "vanilla" else make_plan(
        synthetic_estimate(model, peft_cfg, seed), plan_cfg)
    return build_model(base, plan), plan


def random_batch(config, batch_size: int, seq_length: int, device, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    low = 3 if config.vocab_size > 3 else 0
    return {"input_ids": torch.randint(low, config.vocab_size, (batch_size, seq_length), generator=g).to(device),
            "attention_mask": torch.ones(batch_size, seq_length, dtype=torch.long, device=device),
            "labels": torch.randint(0, 2, (batch_size,), generator=g).to(device)}


def shape_arm(spec: dict, peft_cfg, plan_cfg) -> dict:
    """Train-step throughput, memory and inference timing of one arm of a shape-only benchmark."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, plan = build_shape_model(spec["shape_only"], spec["arm"], peft_cfg, plan_cfg, spec["seed"])
    model.to(device)
    config = model.config
    batch = random_batch(config, spec["batch_size"], spec["seq_length"], device, spec["seed"])
    flops = train_step_flops(model, batch)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step():
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(WARMUP_BATCHES):
        step()
    _sync()
    memory.release()
    start_rss = memory.rss_mb()
    memory.reset_peak()
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    _sync()
    seconds = time.perf_counter() - start
    peak_cuda = memory.peak_cuda_mb()
    peak_rss = memory.peak_rss_mb()  # read before inference, which starts a new peak window
    train_memory = peak_cuda if peak_cuda is not None else model_megabytes(model) + peak_rss - start_rss
    # after the timed steps: the optimizer holds its state already, so one step is the steady state
    train_live = train_live_peak(model, batch, optimizer, steps=1)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model  # adapters stay
    inference = {}
    for size in spec["infer_batch_sizes"]:
        batches = [{k: v for k, v in random_batch(config, size, spec["seq_length"], device, spec["seed"] + i).items()
                    if k != "labels"} for i in range(WARMUP_BATCHES + max(3, spec["steps"]))]
        timing = time_inference(merged, batches)
        timing["memory_mb"] = timing["peak_cuda_mb"] if timing["peak_cuda_mb"] is not None \
            else model_megabytes(merged) + timing["activation_rss_mb"]
        inference[str(size)] = timing
    examples = spec["steps"] * spec["batch_size"]
    return {"arm": spec["arm"], "seed": spec["seed"], "metric": None, "best_metric": None, "final_metric": None,
            "train_seconds": seconds, "estimate_seconds": 0.0, "end_to_end_seconds": seconds,
            "train_throughput": examples / seconds, "train_memory_mb": train_memory, "peak_train_rss_mb": peak_rss,
            "train_live": train_live, "peak_train_live_mb": train_live["peak_mb"],
            "infer_live_mb": {size: timing["live_mb"] for size, timing in inference.items()},
            "model_mb": model_megabytes(merged), "forward_flops_per_example":
            forward_flops(merged, batch) / spec["batch_size"], "train_step_flops_per_example":
            {k: v / spec["batch_size"] for k, v in flops.items()}, "inference": inference,
            "foundation_params": plan.counts["foundation_params_after"],
            "trainable_params": trainable,
            "plan_counts": plan.counts}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
