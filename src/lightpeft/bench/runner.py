"""`lightpeft bench`: both arms on the same model, data, seed, batch size and epochs, each in its own process.

Repeats (one per seed) alternate the arm order, so slow drift of the machine (thermal, other load) hits both arms
alike. Output directory: bench.json (every figure, per repeat and aggregated, plus top-level `ratios`),
bench.md, bench.png, runs/ (each arm's run directory) and logs/ (each child process's output).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lightpeft.bench.aggregate import check_targets, compute_ratios, peer_comparison, summarise_arm, tradeoff_points
from lightpeft.bench.arm import peer_arguments, training_args_to_json
from lightpeft.bench.config import SEARCH_ARMS, all_arms, arm_label, parse_variant
from lightpeft.bench.report import markdown, plot, plot_tradeoff
from lightpeft.config import to_dict
from lightpeft.errors import LightPeftError
from lightpeft.io import write_json, write_text
from lightpeft.stages.outputs import claimed_output_dir, stage_inputs, staging
from lightpeft.stages.train import environment

SCHEMA_VERSION = 1


def _child(mode: str, spec: dict, work: Path, tag: str) -> dict:
    spec_path, out_path, log_path = (work / "logs" / f"{tag}-{mode}.{ext}" for ext in ("spec.json", "json", "log"))
    env = dict(os.environ)
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(spec["threads"])
    if mode == "peer":  # the plain peft + Trainer script, with every flag in one JSON file (HF example style)
        spec = peer_arguments(spec) | {"result_file": str(out_path)}
        command = [sys.executable, "-m", "lightpeft.bench.peer", str(spec_path)]
    else:
        command = [sys.executable, "-m", "lightpeft.bench.arm", mode, str(spec_path), str(out_path)]
    spec_path.write_text(json.dumps(spec, indent=2))
    with open(log_path, "w") as log:
        proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        kept = Path(tempfile.gettempdir()) / f"lightpeft-bench-{tag}-{mode}.log"  # the work dir is discarded
        shutil.copyfile(log_path, kept)
        lines = [line for line in log_path.read_text().splitlines() if line.strip()]
        raise LightPeftError(f"benchmark arm {tag} ({mode}) failed: {lines[-1] if lines else 'no output'} "
                             f"(full log: {kept}); fix that and re-run")
    return json.loads(out_path.read_text())


def _plan_overrides(arm: str) -> dict:
    return parse_variant(arm[arm.index("[") + 1 : -1]) if "[" in arm else {}


def _order(arms: list[str], repeat: int) -> list[str]:
    return list(arms) if repeat % 2 == 0 else list(reversed(arms))


def run_bench(model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, bench_cfg, args, overwrite: bool = False,
              progress: Callable[[str], None] | None = None, search_cfg=None) -> dict:
    """Run the benchmark into `args.output_dir` and return bench.json's content. `progress` receives one line per
    step (default: printed with the seconds since the bench began); `search_cfg`: the PrunePEFT arms' search
    settings."""
    with claimed_output_dir(args.output_dir, overwrite, stage_inputs(model_cfg, data_cfg)) as out:
        return _bench_into(out, model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, bench_cfg, args,
                           progress or _printer(time.perf_counter()), search_cfg)


def bench_settings(model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, bench_cfg, args, search_cfg=None) -> dict:
    """bench.json's `configs`: every setting the figures depend on (what a resumed suite compares)."""
    return to_dict(model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, *([search_cfg] if search_cfg else [])) | {
        "training": training_args_to_json(args), "BenchConfig": dataclasses.asdict(bench_cfg)}


def _bench_into(out: Path, model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, bench_cfg, args, progress,
                search_cfg=None) -> dict:
    configs = to_dict(model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, *([search_cfg] if search_cfg else []))
    training = training_args_to_json(args)
    with staging(out, "bench") as work:
        (work / "logs").mkdir()
        (work / "runs").mkdir()
        arms = all_arms(bench_cfg)
        per_arm: dict[str, list[dict]] = {arm: [] for arm in arms}
        total = len(bench_cfg.seeds) * len(arms)
        done = 0
        for repeat, seed in enumerate(bench_cfg.seeds):
            for arm in _order(arms, repeat):
                tag = f"seed{seed}-{arm}"
                step = f"[{done + 1}/{total}] seed {seed} {arm_label(arm)}"
                spec = {"arm": arm, "seed": seed, "configs": configs, "training": training,
                        "run_dir": str(work / "runs" / tag), "profile": bench_cfg.profile,
                        "export_inference": bench_cfg.export_inference,
                        "infer_batch_sizes": bench_cfg.infer_batch_sizes, "infer_examples": bench_cfg.infer_examples,
                        "shape_only": bench_cfg.shape_only, "steps": bench_cfg.shape_steps,
                        "batch_size": bench_cfg.shape_batch_size, "seq_length": bench_cfg.shape_seq_length,
                        "plan_overrides": _plan_overrides(arm), "threads": bench_cfg.threads, "load_before": os.getloadavg()[0]}
                if bench_cfg.shape_only:
                    progress(f"{step}: timing {bench_cfg.shape_only} (random init)")
                    per_arm[arm].append(_child("shape", spec, work, tag))
                    done += 1
                    continue
                progress(f"{step}: training")
                result = _child("peer" if arm == "peer" else "train", spec, work, tag)
                summary = f"{result['metric']} {result['best_metric']:.4f}, train {result['train_seconds']:.1f}s"
                if arm == "peer":  # the plain script: metric and training time only
                    result["load_before"] = spec["load_before"]
                    progress(f"{step}: {summary}")
                else:
                    progress(f"{step}: {summary}; inference")
                    result.update(_child("infer", spec, work, tag))
                result["run_dir"] = str(Path(out) / "runs" / tag)
                per_arm[arm].append(result)
                done += 1
        bench = _assemble(bench_cfg, data_cfg, per_arm, configs, training)
        write_json(work / "bench.json", bench)
        write_text(work / "bench.md", markdown(bench))
        plot(bench, work / "bench.png")
        if len(bench.get("tradeoff", [])) > 2:
            plot_tradeoff(bench, work / "tradeoff.png")
    progress(f"done: {out}/bench.md")
    return bench


def _assemble(bench_cfg, data_cfg, per_arm: dict, configs: dict, training: dict) -> dict:
    arms = {arm_label(a): summarise_arm(results) for a, results in per_arm.items()}
    bench = {
        "schema_version": SCHEMA_VERSION,
        "kind": "shape-only" if bench_cfg.shape_only else "task",
        "label": bench_cfg.bench_label or bench_cfg.shape_only or Path(data_cfg.task).name,
        "description": _description(bench_cfg, training, configs),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seeds": bench_cfg.seeds,
        "infer_batch_sizes": bench_cfg.infer_batch_sizes,
        "environment": environment() | {"lightpeft_commit": _git_commit()},
        "configs": configs | {"training": training, "BenchConfig": dataclasses.asdict(bench_cfg)},
        "arms": arms,
        "repeats": per_arm,
    }
    if "vanilla" in arms and "Light-PEFT" in arms:
        bench["ratios"] = compute_ratios(arms["Light-PEFT"], arms["vanilla"])
        bench["targets"] = check_targets(bench["ratios"])
        bench["tradeoff"] = tradeoff_points(arms)
    if "vanilla" in arms and "peer" in arms:
        bench["peer"] = peer_comparison(arms["vanilla"], arms["peer"])
    for label in map(arm_label, SEARCH_ARMS):
        if "vanilla" in arms and label in arms:  # "estimate" time is the search's for these arms
            bench.setdefault("search_ratios", {})[label] = compute_ratios(arms[label], arms["vanilla"])
    return bench


def _description(bench_cfg, training: dict, configs: dict) -> str:
    if bench_cfg.shape_only:
        plan = configs["PlanConfig"]
        return (f"Shape-only: random-init `{bench_cfg.shape_only}`, plan drawn from random gates at head ratio "
                f"{plan['head_ratio']:.3g}, FFN ratio {plan['ffn_ratio']:.3g}, module ratio {plan['module_ratio']:.3g}, "
                f"rank ratio {plan['rank_ratio']:.3g}; batch {bench_cfg.shape_batch_size} x "
                f"{bench_cfg.shape_seq_length} tokens, {bench_cfg.shape_steps} timed AdamW steps after warm-up, "
                f"seeds {bench_cfg.seeds}. Throughput and memory only (no accuracy; no estimation stage, so "
                "end-to-end = training). Memory: CUDA allocator peak on GPU; on CPU the model's weight bytes plus the "
                "peak RSS the timed work added over the loaded model. Live: peak live tensor bytes of one training "
                "step after the timed ones and of a forward pass, measured apart from the timed work.")
    model = configs["ModelConfig"]["model_name_or_path"]
    data = configs["DataConfig"]
    peft = configs["PeftSettings"]["peft"]
    return (f"Model `{model}`, PEFT `{peft}`, task `{data['task']}` (train rows ≤ {data['max_train_samples']}, dev rows ≤ "
            f"{data['max_eval_samples']}, max length {data['max_seq_length']}), batch "
            f"{training['per_device_train_batch_size']}, {training['num_train_epochs']} epochs, lr "
            f"{training['learning_rate']}, seeds {bench_cfg.seeds} (arm order alternates). Each arm trains in its own "
            "process; times and memory are medians over seeds, the dev metric is the mean ± std of the best epoch. "
            "Memory: CUDA allocator peak on GPU; on CPU the model's weight bytes plus the peak RSS the stage added "
            "over the loaded model (so allocator leftovers of loading and pruning are not counted). Live: peak "
            "live tensor bytes, measured in the inference process (2 training steps on the longest training batch "
            "with the run's optimizer at learning rate 0; a forward pass of the longest dev batch). Inference: "
            f"{'LoRA merged' if peft == 'lora' else 'adapters kept'}, dev examples, median batch latency after "
            "warm-up." + (" Peer arm: `lightpeft/bench/peer.py`, LoRA q,v with peft and the stock Trainer (dynamic "
                          "padding to the longest row), same rows and training arguments; metric and training time "
                          "only." if "peer" in bench_cfg.arms else ""))


def _git_commit() -> str | None:
    """The source revision the figures come from (with `+dirty` for uncommitted changes), when run from a checkout."""
    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _printer(started: float) -> Callable[[str], None]:
    def progress(message: str) -> None:
        print(f"bench {time.perf_counter() - started:7.0f}s  {message}", flush=True)

    return progress
