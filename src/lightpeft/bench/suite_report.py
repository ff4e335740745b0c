"""The suite's summary across tasks: figures per task from its bench.json, target checks, suite.md and suite.png."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from lightpeft.bench.aggregate import metric_delta
from lightpeft.bench.suite_file import FIGURES, SuiteFile
from lightpeft.report import markdown_table


def paired_deltas(bench: dict) -> list[float]:
    """Light-PEFT - vanilla metric per seed (same seed, same data order), as `metric_delta` counts it."""
    repeats = bench.get("repeats", {})
    vanilla = {r["seed"]: r for r in repeats.get("vanilla", [])}
    deltas = []
    for light in repeats.get("light-peft", []):
        base = vanilla.get(light["seed"])
        if base is None or light.get("best_metric") is None or base.get("best_metric") is None:
            continue
        gib = base.get("greater_is_better", True)
        deltas.append(metric_delta({"best_metric_mean": light["best_metric"]},
                                   {"best_metric_mean": base["best_metric"], "greater_is_better": gib}))
    return deltas


def task_figures(bench: dict) -> dict:
    """The suite's figures of one task (keys of `suite_file.FIGURES`, plus what the table shows beside them)."""
    arms, ratios, peer = bench["arms"], bench.get("ratios", {}), bench.get("peer", {})
    deltas = paired_deltas(bench)
    loads = [a.get("max_load") for a in arms.values() if a.get("max_load") is not None]
    first = next(iter(arms.values()))
    return {
        "metric": first.get("metric"),
        "greater_is_better": first.get("greater_is_better", True),
        "arms": {name: {"mean": a.get("best_metric_mean"), "std": a.get("best_metric_std"),
                        "train_throughput": a.get("train_throughput")} for name, a in arms.items()},
        "metric_delta": ratios.get("metric_delta"),
        "metric_delta_std": statistics.stdev(deltas) if len(deltas) > 1 else 0.0 if deltas else None,
        "train_speedup": ratios.get("train_throughput"),
        "end_to_end_speedup": ratios.get("end_to_end_speedup"),
        "peak_train_live_memory": ratios.get("peak_train_live_memory"),
        "fraction_of_flop_ideal": ratios.get("fraction_of_flop_ideal"),
        "flop_ideal_train_speedup": ratios.get("flop_ideal_train_speedup"),
        "peer_speed": peer.get("vanilla_over_peer_train_throughput"),
        "vanilla_minus_peer_metric": peer.get("vanilla_minus_peer_metric"),
        "model": bench["configs"]["ModelConfig"]["model_name_or_path"],
        "seeds": bench.get("seeds"),
        "max_load": max(loads) if loads else None,
        "commit": bench.get("environment", {}).get("lightpeft_commit"),
        "created": bench.get("created"),
    }


def summarise_suite(suite: SuiteFile, benches: dict[str, dict | None]) -> dict:
    """Every task's figures and checks (None where a task has not finished), and the stretch count."""
    tasks = []
    for task in suite.tasks:
        bench = benches.get(task.name)
        row = {"task": task.name, "finished": bench is not None,
               "targets": {k: str(t) for k, t in task.targets.items()}}
        if bench is not None:
            row.update(task_figures(bench))
            row["checks"] = {k: t.met(row.get(k)) for k, t in task.targets.items()}
        tasks.append(row)
    summary = {"suite": str(suite.path), "description": suite.description, "tasks": tasks,
               "commits": sorted({t["commit"] for t in tasks if t.get("commit")})}
    if suite.stretch:
        stretch = suite.stretch
        eligible = [t for t in tasks if t["finished"] and set(stretch.targets) <= set(t["targets"])]
        met = [t["task"] for t in eligible if all(s.met(t.get(k)) for k, s in stretch.targets.items())]
        summary["stretch"] = {"targets": {k: str(s) for k, s in stretch.targets.items()}, "at_least": stretch.at_least,
                              "tasks_checked": [t["task"] for t in eligible], "tasks_met": met,
                              "met": len(met) >= stretch.at_least}
    return summary


def _num(value, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _checked(row: dict, figure: str, text: str) -> str:
    """The figure with its check: `1.92x pass`, `1.35x miss (>= 1.8)`; unchecked figures as they are."""
    met = row.get("checks", {}).get(figure)
    if figure not in row["targets"] or text == "-":
        return text
    return f"{text} pass" if met else f"{text} **miss** ({row['targets'][figure]})"


def _metric_cell(arm: dict | None, scale: float) -> str:
    if not arm or arm.get("mean") is None:
        return "-"
    return f"{scale * arm['mean']:.1f} ± {scale * (arm.get('std') or 0):.1f}" if scale == 100 else \
        f"{arm['mean']:.3f} ± {arm.get('std') or 0:.3f}"


HEADERS = ["task", "model", "metric", "vanilla", "Light-PEFT", "delta (points)", "train speed-up",
           "end-to-end speed-up", "train live memory", "measured / FLOP ideal", "vanilla / peer speed",
           "peer metric", "seeds"]


def task_row(row: dict) -> list[str]:
    if not row["finished"]:
        return [row["task"], *["-"] * 11, "not run"]
    scale = 100 if row["greater_is_better"] else 1  # fractions in points; perplexity as it is
    delta = "-" if row["metric_delta"] is None else f"{row['metric_delta']:+.1f} ± {row['metric_delta_std'] or 0:.1f}"
    return [row["task"], row["model"], row["metric"], _metric_cell(row["arms"].get("vanilla"), scale),
            _metric_cell(row["arms"].get("Light-PEFT"), scale), _checked(row, "metric_delta", delta),
            _checked(row, "train_speedup", _num(row["train_speedup"], suffix="x")),
            _checked(row, "end_to_end_speedup", _num(row["end_to_end_speedup"], suffix="x")),
            _checked(row, "peak_train_live_memory", _num(row["peak_train_live_memory"], suffix="x")),
            _checked(row, "fraction_of_flop_ideal", _num(row["fraction_of_flop_ideal"], 3)),
            _checked(row, "peer_speed", _num(row["peer_speed"], 3)),
            _metric_cell(row["arms"].get("peer"), scale), str(len(row["seeds"] or []))]


def suite_markdown(summary: dict) -> str:
    tasks = summary["tasks"]
    finished = [t for t in tasks if t["finished"]]
    checks = [met for t in finished for met in t["checks"].values() if met is not None]
    parts = [f"# Benchmark suite: {Path(summary['suite']).stem}", ""]
    if summary["description"]:
        parts += [summary["description"].strip(), ""]
    parts += [f"{len(finished)} of {len(tasks)} tasks finished; targets met: {sum(checks)} of {len(checks)} checks.",
              "", markdown_table(HEADERS, [task_row(t) for t in tasks]), ""]
    if summary.get("stretch"):
        s = summary["stretch"]
        bounds = ", ".join(f"{k} {v}" for k, v in s["targets"].items())
        parts += [f"Stretch ({bounds} on at least {s['at_least']} of the tasks that check them): met on "
                  f"{len(s['tasks_met'])} of {len(s['tasks_checked'])} ({', '.join(s['tasks_met']) or 'none'}): "
                  f"{'pass' if s['met'] else '**miss**'}.", ""]
    parts += ["Figures (each task's bench.json in tasks/NAME/, medians of times over seeds, metric mean ± std of "
              "the best epoch):", ""]
    parts += [f"- **{name}**: {what}" for name, what in FIGURES.items()]
    parts += ["- delta ± std: per-seed Light-PEFT - vanilla (same seed), mean ± std over seeds",
              "- memory: live tensors (weights, gradients, optimizer state, activations), not RSS", ""]
    cores = os.cpu_count() or 1
    loaded = [t["task"] for t in finished if (t.get("max_load") or 0) > cores]
    if loaded:
        parts += [f"**Warning:** the load average exceeded {cores} cores during {', '.join(loaded)}: timings there "
                  "are not trustworthy; re-run those tasks (`--tasks ... --rerun`) on a quiet machine.", ""]
    if len(summary["commits"]) > 1:
        parts += [f"Tasks were measured at different source revisions: {', '.join(summary['commits'])}.", ""]
    return "\n".join(parts)


def suite_plot(summary: dict, path: str | Path) -> None:
    """Three panels across tasks: metric delta (error bars: std over seeds), speed-ups, training memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [t for t in summary["tasks"] if t["finished"]]
    names = [t["task"] for t in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(3, 1, figsize=(max(7.0, 0.9 * len(rows) + 3), 10), sharex=True)

    def bound(ax, figure, style="--"):
        targets = {t["targets"].get(figure) for t in rows} - {None}
        for target in targets:  # one line per distinct bound of this figure
            ax.axhline(float(target.split()[1]), color="#d62728", ls=style, lw=1,
                       label=f"{figure.replace('_', ' ')} target {target}")

    ax = axes[0]
    deltas = [t["metric_delta"] or 0 for t in rows]
    ax.bar(x, deltas, yerr=[t["metric_delta_std"] or 0 for t in rows], color="#1f77b4", capsize=4)
    ax.axhline(0, color="black", lw=0.8)
    bound(ax, "metric_delta")
    ax.set_title("dev metric: Light-PEFT - vanilla (points)", fontsize=9)
    ax = axes[1]
    width = 0.27
    ax.bar(x - width, [t["train_speedup"] or 0 for t in rows], width, label="train", color="#2ca02c")
    ax.bar(x, [t["end_to_end_speedup"] or 0 for t in rows], width, label="end to end", color="#98df8a")
    ax.bar(x + width, [t["flop_ideal_train_speedup"] or 0 for t in rows], width, label="FLOP ideal (train)",
           color="white", edgecolor="#2ca02c", hatch="//")
    ax.axhline(1, color="black", lw=0.8)
    bound(ax, "train_speedup")
    bound(ax, "end_to_end_speedup", ":")
    ax.set_title("speed-up vs vanilla (x)", fontsize=9)
    ax = axes[2]
    ax.bar(x, [t["peak_train_live_memory"] or 0 for t in rows], color="#9467bd")
    bound(ax, "peak_train_live_memory")
    ax.set_title("peak training live-tensor memory, Light-PEFT / vanilla", fontsize=9)
    axes[2].set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(dict(zip(labels, handles)).values(), dict(zip(labels, handles)).keys(), fontsize=7)
    fig.suptitle(f"{Path(summary['suite']).stem}: Light-PEFT vs vanilla LoRA, per task", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
