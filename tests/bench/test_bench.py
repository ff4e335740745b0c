"""The benchmark: FLOP counting, where backward stops, the step profile, ratios, and a whole `bench` run."""

import json

import numpy as np
import pytest
import torch

from lightpeft import LightPeftTrainingArguments, memory
from lightpeft.bench.aggregate import check_targets, compute_ratios, summarise_arm
from lightpeft.bench.config import BenchConfig, parse_variant
from lightpeft.bench.flops import forward_flops, train_step_flops
from lightpeft.bench.profile import PARTS, lowest_trainable_layer, profile_training_step
from lightpeft.cli import parse
from lightpeft.config import DataConfig, ModelConfig
from lightpeft.core import arch
from lightpeft.core.peft_kinds import PeftSettings, wrap_with_lora
from lightpeft.core.surgery import prune_backbone
from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft.config import EstimateConfig, PlanConfig

from conftest import tiny_batch, tiny_model
from helpers import REPO, random_plan


def lora_on_layers(model, layers: list[int], roles=("q", "v")):
    names = [n for n, (layer, _) in arch.linear_roles(model, list(roles)).items() if layer in layers]
    return wrap_with_lora(model, names, 4, 8.0, 0.0)


def labelled(batch, num_labels=3):
    return {**batch, "labels": torch.arange(batch["input_ids"].shape[0]) % num_labels}


def test_backward_stops_at_lowest_trainable_layer():
    """Only the top layer trainable: nothing below it keeps autograd alive, and backward FLOPs shrink."""
    top = lora_on_layers(tiny_model(num_hidden_layers=3), [2])
    everywhere = lora_on_layers(tiny_model(num_hidden_layers=3), [0, 1, 2])
    seen = {}
    hf = top.get_base_model()
    for i, block in enumerate(arch.layer_modules(hf)):
        block.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, out[0].requires_grad if isinstance(
            out, tuple) else out.requires_grad))
    batch = labelled(tiny_batch())
    top.train()
    top(**batch).loss.backward()
    assert seen == {0: False, 1: False, 2: True}
    assert lowest_trainable_layer(top) == 2 and lowest_trainable_layer(everywhere) == 0
    top_flops, all_flops = train_step_flops(top, batch), train_step_flops(everywhere, batch)
    assert top_flops["forward"] == pytest.approx(all_flops["forward"], rel=0.05)
    assert top_flops["backward"] < 0.6 * all_flops["backward"]


def test_pruning_cuts_counted_flops_by_the_removed_share():
    model = tiny_model(num_hidden_layers=2)
    batch = tiny_batch()
    before = forward_flops(model, batch)
    plan = random_plan(model, PlanConfig(head_ratio=0.5, ffn_ratio=0.0, module_ratio=0.0, rank_ratio=0.0))
    prune_backbone(model, plan)
    after = forward_flops(model, batch)
    assert 0.4 * before < after < before  # q,k,v,o and attention matmuls halve; FFN and head stay


def test_profile_parts_add_up_to_the_step(tiny_model_dir):
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from lightpeft.data import load_task, tokenize_task

    model = lora_on_layers(tiny_model(num_labels=2), [1])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    import conftest

    csv = conftest.write_tiny_csv(tiny_model_dir.parent / "profile.csv", rows=40)
    train_ds, _ = tokenize_task(load_task(DataConfig(task=str(csv), max_seq_length=16)), tokenizer, 16)
    result = profile_training_step(model, train_ds, DataCollatorWithPadding(tokenizer), batch_size=4, steps=2,
                                   warmup=1)
    parts = result["parts_seconds"]
    assert set(parts) == set(PARTS)
    assert all(parts[p] > 0 for p in ("attention projections", "attention core", "FFN linears", "PEFT", "backward"))
    assert sum(parts.values()) == pytest.approx(result["step_seconds"])
    assert result["lowest_trainable_layer"] == 1


def arm(throughput, train_s, est_s, mem, lat1, lat32, tput32, inf_mem, metric, step_flops):
    """Live tensor figures: 0.8 of the process memory in training, 0.5 of it in inference."""
    return {"train_throughput": throughput, "train_seconds": train_s, "estimate_seconds": est_s,
            "end_to_end_seconds": train_s + est_s, "train_memory_mb": mem, "peak_train_rss_mb": mem + 500,
            "peak_train_live_mb": 0.8 * mem,
            "model_mb": 80.0, "forward_flops_per_example": 1e6, "best_metric": metric, "final_metric": metric,
            "train_step_flops_per_example": {"total": step_flops}, "metric": "accuracy", "foundation_params": 10,
            "trainable_params": 5, "plan_counts": {},
            "inference": {"1": {"median_latency_ms": lat1, "throughput_examples_per_s": 1000 / lat1,
                                "memory_mb": inf_mem, "live_mb": 0.5 * inf_mem},
                          "32": {"median_latency_ms": lat32, "throughput_examples_per_s": tput32,
                                 "memory_mb": inf_mem, "live_mb": 0.5 * inf_mem}}}


def test_ratios_are_light_over_vanilla_of_medians():
    vanilla = summarise_arm([arm(100, 10, 0, 200, 10, 100, 320, 100, 0.80, 3e6),
                             arm(90, 12, 0, 220, 12, 110, 300, 100, 0.82, 3e6)])
    light = summarise_arm([arm(200, 5, 1, 100, 5, 50, 640, 40, 0.795, 1.5e6),
                           arm(180, 6, 1, 110, 6, 60, 600, 50, 0.815, 1.5e6)])
    assert vanilla["train_throughput"] == 95 and light["end_to_end_seconds"] == 6.5
    ratios = compute_ratios(light, vanilla)
    assert ratios["train_throughput"] == pytest.approx(190 / 95)
    assert ratios["end_to_end_time"] == pytest.approx(6.5 / 11)
    assert ratios["end_to_end_speedup"] == pytest.approx(11 / 6.5)
    assert ratios["peak_train_memory"] == pytest.approx(105 / 210)
    assert ratios["infer_latency"] == pytest.approx(5.5 / 11) and ratios["infer_latency_batch"] == 1
    assert ratios["infer_memory"] == pytest.approx(45 / 100)
    assert ratios["peak_train_live_memory"] == pytest.approx(105 / 210)
    assert ratios["infer_live_memory"] == ratios["infer_live_memory_bs1"] == pytest.approx(45 / 100)
    assert light["infer_live_mb"] == {"1": 22.5, "32": 22.5}
    assert ratios["metric_delta"] == pytest.approx(-0.5)
    assert ratios["flop_ideal_train_speedup"] == pytest.approx(2.0)
    assert ratios["fraction_of_flop_ideal"] == pytest.approx(1.0)
    met = {t["figure"]: t["met"] for t in check_targets(ratios)}
    assert met == {"train_throughput": True, "end_to_end_speedup": True, "peak_train_live_memory": True,
                   "infer_latency": True, "infer_live_memory": True, "fraction_of_flop_ideal": True,
                   "metric_delta": True}
    assert vanilla["best_metric_std"] == pytest.approx(np.std([0.80, 0.82], ddof=1))


def test_peak_memory_window_resets():
    if not memory.reset_peak():
        pytest.skip("this OS keeps only the lifetime peak")
    block = np.ones(40_000_000)  # ~305 MiB
    high = memory.peak_rss_mb()
    del block
    memory.release()
    memory.reset_peak()
    assert memory.peak_rss_mb() < high - 200


def test_variants_are_plan_flag_overrides():
    from lightpeft.bench.config import all_arms, arm_label, parse_variant

    assert parse_variant("round_to=64,target_train_speedup=2.0") == {"round_to": 64, "target_train_speedup": 2.0}
    cfg = BenchConfig(variants=["round_to=64"])
    assert all_arms(cfg) == ["vanilla", "light-peft", "light-peft[round_to=64]"]
    assert arm_label(all_arms(cfg)[-1]) == "Light-PEFT [round_to=64]"
    with pytest.raises(LightPeftError, match="FLAG=VALUE with an estimation or plan flag"):
        BenchConfig(variants=["no_such_flag=1"])
    with pytest.raises(LightPeftError, match="round_to"):
        BenchConfig(variants=["round_to=0"])


def test_a_recipe_variant_sets_the_recipes_estimation_and_plan_values():
    from lightpeft.bench.arm import _configs, training_args_to_json
    from lightpeft.config import to_dict
    from lightpeft.methods.light_peft.recipes import recipe_configs

    est, plan = recipe_configs("accuracy")  # the bench's own settings: the accuracy recipe
    args = LightPeftTrainingArguments(output_dir="/tmp/x", use_cpu=True)
    spec = {"configs": to_dict(ModelConfig(), DataConfig(), PeftSettings(), est, plan),
            "training": training_args_to_json(args), "run_dir": "/tmp/x", "seed": 1}
    paper_est, paper_plan = recipe_configs("paper", head_ratio=0.2)
    *_, arm_est, arm_plan, _ = _configs({**spec, "arm": "light-peft[recipe=paper,head_ratio=0.2]",
                                          "plan_overrides": parse_variant("recipe=paper,head_ratio=0.2")})
    assert (arm_est, arm_plan) == (paper_est, paper_plan) and arm_plan.recipe == "paper"
    assert arm_est.min_estimate_steps == 0 and arm_est.train_schedule == "full" and arm_plan.head_ratio == 0.2
    *_, main_est, main_plan, _ = _configs({**spec, "arm": "light-peft", "plan_overrides": {}})
    assert (main_est, main_plan) == (est, plan)
    with pytest.raises(LightPeftError, match="--recipe"):
        parse_variant("recipe=fast")
    with pytest.raises(LightPeftError, match="min_estimate_steps"):
        parse_variant("min_estimate_steps=-1")


def test_distillation_variant_distills_in_its_arm_only():
    from lightpeft.bench.arm import _configs, peer_arguments, training_args_to_json
    from lightpeft.bench.config import all_arms, parse_variant
    from lightpeft.config import to_dict

    cfg = BenchConfig(variants=["distill_weight=0.5", "distill_weight=1,distill_temperature=4,round_to=64"])
    assert parse_variant(cfg.variants[1]) == {"distill_weight": 1, "distill_temperature": 4, "round_to": 64}
    args = LightPeftTrainingArguments(output_dir="/tmp/x", use_cpu=True, distill_weight=0.2)  # a bench-wide weight
    spec = {"configs": to_dict(ModelConfig(), DataConfig(), PeftSettings(), EstimateConfig(), PlanConfig()),
            "training": training_args_to_json(args), "run_dir": "/tmp/x", "seed": 1}
    weights = {}
    for arm in all_arms(cfg):
        overrides = parse_variant(arm[arm.index("[") + 1: -1]) if "[" in arm else {}
        *_, plan_cfg, arm_args = _configs({**spec, "arm": arm, "plan_overrides": overrides})
        weights[arm] = (arm_args.distill_weight, arm_args.distill_temperature, plan_cfg.round_to)
    assert weights == {"vanilla": (0.0, 2.0, 1), "light-peft": (0.2, 2.0, 1),
                       "light-peft[distill_weight=0.5]": (0.5, 2.0, 1),
                       "light-peft[distill_weight=1,distill_temperature=4,round_to=64]": (1, 4, 64)}
    assert "distill_weight" not in peer_arguments(spec)  # the plain script's TrainingArguments lack it
    for bad, message in (("distill_weight=-1", "must be in \\[0, 1\\]"), ("distill_weight=2", "got 2"),
                         ("distill_temperature=0", "--distill_temperature must be a finite number > 0")):
        with pytest.raises(LightPeftError, match=message):
            BenchConfig(variants=[bad])


@pytest.mark.parametrize("path", sorted((REPO / "benchmarks" / "configs").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_committed_bench_configs_parse_and_validate(path):
    *_, bench_cfg, _, args = parse("bench", ["--config", str(path)])
    assert bench_cfg.seeds and args.output_dir.startswith("benchmarks/results/")


def test_bench_config_rejects_bad_values():
    with pytest.raises(LightPeftError, match="--arms"):
        BenchConfig(arms=["vanilla", "nope"])
    with pytest.raises(LightPeftError, match="--seeds"):
        BenchConfig(seeds=[])


def test_bench_runs_both_arms_in_their_own_processes(tiny_model_dir, tiny_csv, tmp_path):
    from lightpeft.bench import run_bench

    out = tmp_path / "bench"
    args = LightPeftTrainingArguments(output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=16,
                                      learning_rate=5e-3, seed=0, use_cpu=True)
    bench = run_bench(ModelConfig(str(tiny_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16),
                      PeftSettings(), EstimateConfig(estimate_steps=2), PlanConfig(),
                      BenchConfig(infer_examples=8, infer_batch_sizes=[1, 4], export_inference=True), args)
    on_disk = json.loads((out / "bench.json").read_text())
    assert on_disk["ratios"] == bench["ratios"]
    for key in ("train_throughput", "end_to_end_time", "peak_train_memory", "infer_latency", "infer_memory",
                "peak_train_live_memory", "infer_live_memory", "infer_live_memory_bs1", "metric_delta"):
        assert isinstance(bench["ratios"][key], float), key
    light = bench["arms"]["Light-PEFT"]
    for figures in bench["arms"].values():  # live tensors: the weights and more, in training and at each batch size
        assert figures["peak_train_live_mb"] > figures["infer_live_mb"]["4"] > figures["model_mb"]
        assert set(figures["infer_live_mb"]) == {"1", "4"}
    report = (out / "bench.md").read_text()
    assert "train live MB" in report and "infer live MB bs4" in report and "## Memory (MB)" in report
    assert "| infer bs1 live |" in report and "compare arms by" in report
    assert light["estimate_seconds"] > 0 and bench["arms"]["vanilla"]["estimate_seconds"] == 0
    assert light["foundation_params"] < bench["arms"]["vanilla"]["foundation_params"]
    assert (out / "bench.png").stat().st_size > 10_000 and "## Targets" in (out / "bench.md").read_text()
    assert (out / "runs" / "seed42-light-peft" / "run.json").is_file()
    assert light["export_mb_on_disk"] > light["run_dir_mb_on_disk"] > 0 and "## Deployment forms" in (
        out / "bench.md").read_text()


def test_bench_failure_names_the_arm_and_leaves_nothing(tiny_model_dir, tmp_path):
    from lightpeft.bench import run_bench

    out = tmp_path / "bench"
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\n")  # no rows: the child fails with a clear message
    args = LightPeftTrainingArguments(output_dir=str(out), use_cpu=True)
    with pytest.raises(LightPeftError, match="benchmark arm seed42-vanilla"):
        run_bench(ModelConfig(str(tiny_model_dir)), DataConfig(task=str(bad)), PeftSettings(), EstimateConfig(),
                  PlanConfig(), BenchConfig(), args)
    assert not out.exists()


def test_bench_runs_a_prune_peft_arm_beside_vanilla(tiny_model_dir, tiny_csv, tmp_path):
    from lightpeft.bench import run_bench
    from lightpeft.methods.prune_peft.config import SearchConfig

    out = tmp_path / "bench"
    args = LightPeftTrainingArguments(output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=16,
                                      learning_rate=5e-3, seed=0, use_cpu=True)
    bench = run_bench(ModelConfig(str(tiny_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16),
                      PeftSettings(), EstimateConfig(estimate_steps=2), PlanConfig(),
                      BenchConfig(arms=["vanilla", "prune-peft"], infer_examples=8, infer_batch_sizes=[4]), args,
                      search_cfg=SearchConfig(round_steps=2, criteria_assignment="paper", budget_fraction=0.5))
    pp, vanilla = bench["arms"]["PrunePEFT"], bench["arms"]["vanilla"]
    assert pp["estimate_seconds"] > 0  # the search's time
    assert pp["trainable_params"] < vanilla["trainable_params"]
    assert isinstance(bench["search_ratios"]["PrunePEFT"]["train_throughput"], float)
    assert (out / "runs" / "seed42-prune-peft" / "search" / "plan.json").is_file()


def test_shape_only_bench_refuses_search_arms():
    with pytest.raises(LightPeftError, match="cannot search"):
        BenchConfig(shape_only="minilm", arms=["vanilla", "prune-peft"])
