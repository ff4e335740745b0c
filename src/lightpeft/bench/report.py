"""bench.md and bench.png from the aggregated benchmark."""

from __future__ import annotations

import os
from pathlib import Path

from lightpeft.bench.profile import PARTS
from lightpeft.report import markdown_table


def _fmt(value, digits: int = 3):
    return None if value is None else round(value, digits)


def arm_rows(arms: dict) -> list[list]:
    rows = []
    for name, a in arms.items():
        inf = a.get("inference", {})
        lat = [_fmt(inf[b]["median_latency_ms"], 2) for b in sorted(inf, key=int)]
        rows.append([
            name, _metric(a), _fmt(a["train_throughput"], 1), _fmt(a["train_seconds"], 1),
            _fmt(a["estimate_seconds"], 1), _fmt(a["end_to_end_seconds"], 1), _fmt(a["train_memory_mb"], 0),
            _fmt(a.get("peak_train_live_mb"), 0), *lat,
            _fmt(inf[max(inf, key=int)]["throughput_examples_per_s"], 1) if inf else None,
            _fmt(inf[max(inf, key=int)]["memory_mb"], 0) if inf else None,
            _fmt(inf[max(inf, key=int)].get("live_mb"), 0) if inf else None, a["foundation_params"],
            a["trainable_params"], _fmt((a.get("forward_flops_per_example") or 0) / 1e6, 1),
        ])
    return rows


def on_gpu(bench: dict) -> bool:
    return str(bench.get("environment", {}).get("device", "")).startswith("cuda")


def memory_note(bench: dict) -> str:
    """One line on the two memory figures: which one to read, and why they differ."""
    primary = "on GPU the allocator's peak stays the primary figure" if on_gpu(bench) else \
        "on CPU the figure to compare arms by"
    return ("Memory: *memory* = the CUDA allocator's peak on GPU; on CPU the weights plus the peak RSS the stage "
            "added, which also holds freed heap pages and allocator / oneDNN per-shape caches. *Live* = peak bytes "
            "of tensors alive at once (weights, gradients, optimizer state, activations), over training steps on "
            f"the longest training batch and a forward pass of the longest dev batch: {primary}.")


def memory_rows(arms: dict, sizes: list) -> list[list]:
    rows = []
    for name, a in arms.items():
        inf = a.get("inference", {})
        rows.append([name, _fmt(a["train_memory_mb"], 1), _fmt(a.get("peak_train_live_mb"), 1),
                     *[_fmt(inf.get(str(b), {}).get(key), 1) for b in sizes for key in ("memory_mb", "live_mb")]])
    return rows


def _metric(arm: dict) -> str:
    mean, std = arm["best_metric_mean"], arm["best_metric_std"]
    if mean is None:
        return "-"
    return f"{mean:.4f} ± {std:.4f}" if std else f"{mean:.4f}"


def _delta_header(bench: dict) -> str:
    """metric_delta is vanilla - Light-PEFT perplexity for causal LMs (lower is better), else points."""
    lower_is_better = not next(iter(bench["arms"].values())).get("greater_is_better", True)
    return "improvement (perplexity)" if lower_is_better else "delta (points)"


def markdown(bench: dict) -> str:
    arms, sizes = bench["arms"], bench["infer_batch_sizes"]
    headers = ["arm", f"dev {next(iter(arms.values()))['metric'] or 'metric'} (best)", "train ex/s", "train s", "estimate s",
               "end-to-end s", "train memory MB", "train live MB", *[f"infer latency bs{b} ms" for b in sizes],
               f"infer ex/s bs{max(sizes)}", f"infer memory MB bs{max(sizes)}", f"infer live MB bs{max(sizes)}",
               "foundation params", "trainable params", "forward MFLOPs/example"]
    parts = [f"# Benchmark: {bench['label']}", "", bench["description"], "", markdown_table(headers, arm_rows(arms))]
    parts += ["", "## Memory (MB)", "", markdown_table(
        ["arm", "train memory", "train live", *[f"infer bs{b} {kind}" for b in sizes for kind in ("memory", "live")]],
        memory_rows(arms, sizes)), "", memory_note(bench)]
    if bench.get("ratios"):
        parts += ["", "## Light-PEFT / vanilla", "",
                  markdown_table(["figure", "ratio"], [[k, _fmt(v, 3)] for k, v in bench["ratios"].items()])]
        parts += ["", "## Targets", "",
                  markdown_table(["figure", "target", "measured", "met"],
                                 [[t["figure"], t["target"], _fmt(t["measured"], 3), t["met"]]
                                  for t in bench["targets"]])]
    if bench.get("peer"):
        peer = bench["peer"]
        parts += ["", "## Vanilla arm vs a plain peft + Trainer script (peer arm)", "",
                  markdown_table(["figure", "value"], [
                      ["vanilla / peer training throughput", _fmt(peer["vanilla_over_peer_train_throughput"])],
                      [f"vanilla within {peer['tolerance']:.0%} of the peer's speed", peer["within_tolerance"]],
                      [f"vanilla - peer {_delta_header(bench)}", _fmt(peer["vanilla_minus_peer_metric"], 2)]]),
                  "", "The peer arm is `lightpeft/bench/peer.py`: LoRA q,v with peft and the stock `Trainer`, dynamic "
                  "padding, the same rows, seed, batch size, epochs and learning rate; no lightpeft model or training "
                  "code."]
    profiled = {n: a["profile"] for n, a in arms.items() if a.get("profile")}
    if profiled:
        parts += ["", "## Where a training step's time goes (ms per step)", "",
                  markdown_table(["part", *profiled], [[p, *[_fmt(1000 * prof["parts_seconds"][p], 1)
                                                            for prof in profiled.values()]] for p in PARTS]
                                 + [["step", *[_fmt(1000 * prof["step_seconds"], 1) for prof in profiled.values()]],
                                    ["backward stops at layer", *[prof["lowest_trainable_layer"]
                                                                  for prof in profiled.values()]]])]
    forms = [(name, a) for name, a in arms.items() if a.get("export_inference")]
    if forms:
        rows = []
        for name, a in forms:
            for label, key in (("as trained (PEFT unmerged)", "unmerged_inference"),
                               ("merged in the bench", "inference"), ("`lightpeft export`", "export_inference")):
                rows.append([name, label, *[_fmt(a[key][str(b)]["median_latency_ms"], 2) for b in sizes],
                             *[_fmt(a[key][str(b)]["memory_mb"], 0) for b in sizes],
                             *[_fmt(a[key][str(b)].get("live_mb"), 0) for b in sizes]])
        parts += ["", "## Deployment forms (inference)", "",
                  markdown_table(["arm", "form", *[f"latency bs{b} ms" for b in sizes],
                                  *[f"memory bs{b} MB" for b in sizes], *[f"live bs{b} MB" for b in sizes]],
                                 rows), "",
                  markdown_table(["arm", "run dir MB (no estimate)", "export MB"],
                                 [[n, _fmt(a["run_dir_mb_on_disk"], 3), _fmt(a["export_mb_on_disk"], 1)]
                                  for n, a in forms])]
    if bench.get("tradeoff"):
        parts += ["", "## Accuracy vs speed-up", "",
                  markdown_table(["arm", "measured train speed-up", "counted (FLOP) speed-up, 128 tokens", "dev metric",
                                  _delta_header(bench), "foundation params"],
                                 [[p["arm"], _fmt(p["train_speedup"]), _fmt(p["counted_speedup"]),
                                   _fmt(p["best_metric"], 4), _fmt(p["metric_delta"], 2), p["foundation_params"]]
                                  for p in bench["tradeoff"]])]
    loads = {n: a.get("max_load") for n, a in arms.items()}
    cores = os.cpu_count() or 1
    if any(v is not None and v > cores for v in loads.values()):
        parts += ["", f"**Warning:** the machine's load average reached {max(v or 0 for v in loads.values()):.1f} "
                  f"on {cores} cores during the runs: other processes competed for the CPU, so times are inflated "
                  "and ratios noisy. Re-run on a quiet machine."]
    parts += ["", "## Environment", "", markdown_table(["key", "value"], [[k, v] for k, v in
                                                                         bench["environment"].items()])]
    return "\n".join(parts) + "\n"


def plot(bench: dict, path: str | Path) -> None:
    """Bar charts, one panel per figure, arms side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = bench["arms"]
    names = list(arms)
    sizes = [str(b) for b in bench["infer_batch_sizes"]]
    # memory bars: the CUDA allocator's peak on GPU, live tensor bytes on CPU (RSS there is mostly caches)
    gpu = on_gpu(bench)
    kind = "CUDA allocator" if gpu else "live tensors"
    train_key, infer_key = ("train_memory_mb", "memory_mb") if gpu else ("peak_train_live_mb", "live_mb")
    panels = [
        ("dev metric (best, mean)", [a["best_metric_mean"] or 0 for a in arms.values()],
         [a["best_metric_std"] or 0 for a in arms.values()]),
        ("training throughput (ex/s)", [a["train_throughput"] or 0 for a in arms.values()], None),
        ("end-to-end time (s, estimate + train)", [a["end_to_end_seconds"] or 0 for a in arms.values()], None),
        (f"peak training memory, {kind} (MB)", [a.get(train_key) or 0 for a in arms.values()], None),
        *[(f"inference latency bs{b} (ms)", [a["inference"].get(b, {}).get("median_latency_ms") or 0
                                              for a in arms.values()], None) for b in sizes],
        (f"inference memory bs{sizes[-1]}, {kind} (MB)",
         [a["inference"].get(sizes[-1], {}).get(infer_key) or 0 for a in arms.values()], None),
    ]
    cols = 4
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    colors = ["#7f7f7f", "#1f77b4", "#2ca02c"][: len(names)]
    for ax, (title, values, errors) in zip(axes.flat, panels):
        ax.bar(names, values, yerr=errors, color=colors, capsize=4)
        ax.set_title(title, fontsize=9)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{bench['label']}: Light-PEFT vs vanilla PEFT", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_tradeoff(bench: dict, path: str | Path) -> None:
    """Dev metric vs measured training speed-up, one point per arm (vanilla at 1.0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted(bench["tradeoff"], key=lambda p: p["train_speedup"] or 0)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs, ys = [p["train_speedup"] for p in points], [p["best_metric"] for p in points]
    ax.plot(xs, ys, "o-", color="#1f77b4")
    for p in points:
        # short labels: the variant's plan flags one per line, so long variants do not squeeze the axes
        label = p["arm"].replace("Light-PEFT [", "").rstrip("]").replace(",", "\n")
        label = "Light-PEFT (paper)" if label == "Light-PEFT" else label
        ax.annotate(label, (p["train_speedup"], p["best_metric"]), textcoords="offset points", xytext=(6, 2),
                    fontsize=7)
    span = max(xs) - min(xs) or 1.0
    ax.set_xlim(min(xs) - 0.05 * span, max(xs) + 0.45 * span)
    ax.set(xlabel="training speed-up vs vanilla (measured throughput)", ylabel="dev metric (best epoch, mean)",
           title=f"{bench['label']}: accuracy vs speed-up")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
