"""From per-repeat arm results to medians, means and the Light-PEFT / vanilla ratios in bench.json."""

from __future__ import annotations

import statistics

# the benchmark's own targets (a suite file sets its own), as (ratio key, comparison, bound); memory targets are in
# live tensor bytes (on CPU, RSS holds allocator and library caches that say nothing about the model; on GPU the
# allocator's peak is close to them)
TARGETS = (
    ("train_throughput", ">=", 2.0),
    ("end_to_end_speedup", ">=", 1.6),
    ("peak_train_live_memory", "<=", 0.55),
    ("infer_latency", "<=", 0.6),
    ("infer_live_memory", "<=", 0.5),
    ("fraction_of_flop_ideal", ">=", 0.9),
    ("metric_delta", ">=", -1.0),
)

TIMED = ("train_seconds", "estimate_seconds", "end_to_end_seconds", "train_throughput", "train_memory_mb",
         "peak_train_rss_mb", "peak_train_live_mb", "model_mb", "forward_flops_per_example")
INFERENCE = ("median_latency_ms", "throughput_examples_per_s", "memory_mb", "live_mb")


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _mean_std(values: list) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise_arm(repeats: list[dict]) -> dict:
    """Median of every timing/memory figure over repeats; mean and spread of the dev metric."""
    out = {key: _median([r.get(key) for r in repeats]) for key in TIMED}
    out["max_load"] = max((max(r.get("load_before") or 0, r.get("load_after") or 0) for r in repeats), default=None)
    out["best_metric_mean"], out["best_metric_std"] = _mean_std([r.get("best_metric") for r in repeats])
    out["final_metric_mean"], out["final_metric_std"] = _mean_std([r.get("final_metric") for r in repeats])
    out["train_step_flops_per_example"] = _median([r["train_step_flops_per_example"]["total"] for r in repeats
                                                   if "train_step_flops_per_example" in r])
    sizes = sorted({int(b) for r in repeats for b in r.get("inference", {})})
    out["inference"] = {
        str(b): {key: _median([r["inference"][str(b)].get(key) for r in repeats if str(b) in r.get("inference", {})])
                 for key in INFERENCE}
        for b in sizes
    }
    out["infer_live_mb"] = {b: figures["live_mb"] for b, figures in out["inference"].items()}
    for form in ("unmerged_inference", "export_inference"):
        if any(form in r for r in repeats):
            out[form] = {str(b): {key: _median([r[form][str(b)].get(key) for r in repeats if form in r])
                                  for key in INFERENCE}
                         for b in sizes}
    for key in ("export_mb_on_disk", "run_dir_mb_on_disk"):
        out[key] = _median([r.get(key) for r in repeats])
    first = repeats[0]
    for key in ("metric", "foundation_params", "trainable_params", "plan_counts", "plan_ratios"):
        out[key] = first.get(key)
    out["greater_is_better"] = first.get("greater_is_better", True)
    profiles = [r["profile"] for r in repeats if "profile" in r]
    if profiles:
        parts = {part: _median([p["parts_seconds"][part] for p in profiles]) for part in profiles[0]["parts_seconds"]}
        out["profile"] = profiles[0] | {"parts_seconds": parts, "step_seconds": sum(parts.values())}
    return out


def _ratio(light, vanilla) -> float | None:
    return light / vanilla if light is not None and vanilla not in (None, 0) else None


def metric_delta(light: dict, vanilla: dict) -> float | None:
    """How much better Light-PEFT's dev metric is than vanilla's (negative: worse): in points (x100) for metrics
    that are fractions (accuracy, F1, correlation), in perplexity for causal LMs, where lower is better."""
    if light["best_metric_mean"] is None or vanilla["best_metric_mean"] is None:
        return None
    difference = light["best_metric_mean"] - vanilla["best_metric_mean"]
    return 100 * difference if vanilla.get("greater_is_better", True) else -difference


def compute_ratios(light: dict, vanilla: dict) -> dict:
    """Light-PEFT / vanilla for every figure (metric_delta: see `metric_delta`)."""
    ratios = {
        "train_throughput": _ratio(light["train_throughput"], vanilla["train_throughput"]),
        "train_time": _ratio(light["train_seconds"], vanilla["train_seconds"]),
        "end_to_end_time": _ratio(light["end_to_end_seconds"], vanilla["end_to_end_seconds"]),
        "peak_train_memory": _ratio(light["train_memory_mb"], vanilla["train_memory_mb"]),
        "peak_train_process_rss": _ratio(light["peak_train_rss_mb"], vanilla["peak_train_rss_mb"]),
        "peak_train_live_memory": _ratio(light.get("peak_train_live_mb"), vanilla.get("peak_train_live_mb")),
        "model_size": _ratio(light["model_mb"], vanilla["model_mb"]),
        "foundation_params": _ratio(light["foundation_params"], vanilla["foundation_params"]),
        "trainable_params": _ratio(light["trainable_params"], vanilla["trainable_params"]),
        "forward_flops": _ratio(light["forward_flops_per_example"], vanilla["forward_flops_per_example"]),
        "train_step_flops": _ratio(light["train_step_flops_per_example"], vanilla["train_step_flops_per_example"]),
    }
    ratios["end_to_end_speedup"] = 1 / ratios["end_to_end_time"] if ratios["end_to_end_time"] else None
    ratios["flop_ideal_train_speedup"] = 1 / ratios["train_step_flops"] if ratios["train_step_flops"] else None
    ratios["fraction_of_flop_ideal"] = _ratio(ratios["train_throughput"], ratios["flop_ideal_train_speedup"])
    sizes = sorted(set(light["inference"]) & set(vanilla["inference"]), key=int)
    if sizes:
        small, large = light["inference"][sizes[0]], light["inference"][sizes[-1]]
        v_small, v_large = vanilla["inference"][sizes[0]], vanilla["inference"][sizes[-1]]
        ratios["infer_latency"] = _ratio(small["median_latency_ms"], v_small["median_latency_ms"])
        ratios["infer_latency_batch"] = int(sizes[0])
        ratios["infer_throughput"] = _ratio(large["throughput_examples_per_s"], v_large["throughput_examples_per_s"])
        ratios["infer_throughput_batch"] = int(sizes[-1])
        ratios["infer_memory"] = _ratio(large["memory_mb"], v_large["memory_mb"])
        ratios["infer_live_memory"] = _ratio(large.get("live_mb"), v_large.get("live_mb"))
        for size in sizes:
            ratios[f"infer_latency_bs{size}"] = _ratio(light["inference"][size]["median_latency_ms"],
                                                        vanilla["inference"][size]["median_latency_ms"])
        for size in sizes:
            ratios[f"infer_live_memory_bs{size}"] = _ratio(light["inference"][size].get("live_mb"),
                                                            vanilla["inference"][size].get("live_mb"))
    if light["best_metric_mean"] is not None and vanilla["best_metric_mean"] is not None:
        ratios["metric_delta"] = metric_delta(light, vanilla)
    return ratios


def check_targets(ratios: dict) -> list[dict]:
    rows = []
    for key, op, bound in TARGETS:
        value = ratios.get(key)
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        rows.append({"figure": key, "target": f"{op} {bound}", "measured": value, "met": met})
    return rows


def tradeoff_points(arms: dict) -> list[dict]:
    """Dev metric against measured training speed-up (throughput / vanilla's) for every arm."""
    vanilla = arms["vanilla"]
    points = []
    for name, arm in arms.items():
        if name == "peer":  # the plain-script baseline is no point on Light-PEFT's accuracy / speed curve
            continue
        points.append({"arm": name, "train_speedup": _ratio(arm["train_throughput"], vanilla["train_throughput"]),
                       "counted_speedup": (arm.get("plan_counts") or {}).get("counted_train_speedup_seq128"),
                       "best_metric": arm["best_metric_mean"], "metric_delta": metric_delta(arm, vanilla),
                       "foundation_params": arm["foundation_params"]})
    return points


PEER_TOLERANCE = 0.05  # the vanilla arm must train at least 95% as fast as the plain peft + Trainer script


def peer_comparison(vanilla: dict, peer: dict) -> dict:
    """The vanilla arm against the plain peft + Trainer script (`bench/peer.py`) on the same data and settings."""
    speed = _ratio(vanilla["train_throughput"], peer["train_throughput"])
    return {"vanilla_over_peer_train_throughput": speed,
            "within_tolerance": None if speed is None else speed >= 1 - PEER_TOLERANCE,
            "tolerance": PEER_TOLERANCE, "vanilla_minus_peer_metric": metric_delta(vanilla, peer)}
