"""Plans sized by accuracy: candidates scored on held-out rows during estimation, the cheapest within the drop."""

import pytest
import torch

from lightpeft import (
    DataConfig,
    EstimateConfig,
    LightPeftError,
    LightPeftTrainingArguments,
    ModelConfig,
    PeftSettings,
    PlanConfig,
    estimate,
    make_plan,
)
from lightpeft.methods.light_peft.plan_search import choose_ratios, drop_in_points, scored_settings, split_holdout

RATIOS = [0.0, 0.25, 0.5]


def fake_search(drops: dict, **settings) -> dict:
    recorded = scored_settings(PlanConfig())
    return {"metric": "accuracy", "metric_kind": "accuracy", "examples": 100, "reference": {"metric": 0.9},
            "settings": {**recorded, **settings},
            "candidates": [{"head_ratio": h, "ffn_ratio": f, "metric": 0.9 - d / 100, "predicted_drop": d}
                           for (h, f), d in drops.items()]}


def ratio_cost(cfg: PlanConfig) -> float:  # fewer kept units = cheaper; heads weigh more here
    return 2 * (1 - cfg.head_ratio) + (1 - cfg.ffn_ratio)


def test_drops_are_points_and_respect_the_metric_direction():
    assert drop_in_points("accuracy", 0.80, 0.79) == pytest.approx(1.0)
    assert drop_in_points("mcc", 0.50, 0.55) == pytest.approx(-5.0)  # better than the reference
    assert drop_in_points("perplexity", 10.0, 12.5) == pytest.approx(2.5)  # lower is better, own units


def test_the_cheapest_candidate_within_the_drop_wins():
    drops = {(h, f): 10 * h + 4 * f for h in RATIOS for f in RATIOS}  # heads hurt more than neurons
    chosen, record = choose_ratios(fake_search(drops), PlanConfig(max_metric_drop=2.0), ratio_cost)
    assert (chosen.head_ratio, chosen.ffn_ratio) == (0.0, 0.5)  # drop 2.0; (0.25, 0) costs more and drops 2.5
    assert record["predicted_drop"] == pytest.approx(2.0) and record["reference_metric"] == 0.9
    chosen, _ = choose_ratios(fake_search(drops), PlanConfig(max_metric_drop=100.0), ratio_cost)
    assert (chosen.head_ratio, chosen.ffn_ratio) == (0.5, 0.5)


def test_a_lucky_aggressive_candidate_does_not_beat_the_milder_ones_it_contains():
    drops = {(h, f): 10 * h + 4 * f for h in RATIOS for f in RATIOS}
    drops[(0.5, 0.5)] = -1.0  # noise: reads better than the unpruned model
    chosen, record = choose_ratios(fake_search(drops), PlanConfig(max_metric_drop=2.0), ratio_cost)
    assert (chosen.head_ratio, chosen.ffn_ratio) == (0.0, 0.5) and record["predicted_drop"] == pytest.approx(2.0)


def test_the_unpruned_structure_is_the_fallback_when_nothing_fits():
    drops = {(h, f): 50.0 for h in RATIOS for f in RATIOS}
    drops[(0.0, 0.0)] = 0.4  # noise on the held-out rows: the unpruned candidate itself need not read 0
    chosen, record = choose_ratios(fake_search(drops), PlanConfig(max_metric_drop=0.0), ratio_cost)
    assert (chosen.head_ratio, chosen.ffn_ratio) == (0.0, 0.0)


def test_candidates_scored_with_other_settings_are_refused():
    search = fake_search({(0.0, 0.0): 0.0}, structure_score="taylor")
    with pytest.raises(LightPeftError, match="--structure_score gate"):
        choose_ratios(search, PlanConfig(max_metric_drop=1.0), ratio_cost)
    with pytest.raises(LightPeftError, match="--plan_search_examples"):
        choose_ratios(None, PlanConfig(max_metric_drop=1.0), ratio_cost)
    with pytest.raises(LightPeftError, match="--uniform True"):
        choose_ratios(fake_search({(0.0, 0.0): 0.0}), PlanConfig(max_metric_drop=1.0, uniform=True), ratio_cost)


def test_max_metric_drop_and_a_budget_exclude_each_other():
    with pytest.raises(LightPeftError, match="not both"):
        PlanConfig(max_metric_drop=1.0, target_train_speedup=2.0)


def test_holdout_is_a_disjoint_quarter_at_most(tiny_csv):
    from datasets import Dataset

    rows = Dataset.from_dict({"x": list(range(100))})
    rest, held = split_holdout(rows, 40, seed=0)
    assert len(held) == 25 and len(rest) == 75  # capped at a quarter
    assert not set(held["x"]) & set(rest["x"]) and set(held["x"]) | set(rest["x"]) == set(range(100))
    with pytest.raises(LightPeftError, match="at least 8 held-out rows"):
        split_holdout(rows.select(range(20)), 40, seed=0)


@pytest.fixture(scope="module")
def scored_estimate(tiny_model_dir, tiny_csv, tmp_path_factory):
    args = LightPeftTrainingArguments(output_dir=str(tmp_path_factory.mktemp("est") / "e"), disable_tqdm=True,
                                      per_device_train_batch_size=8, learning_rate=5e-3, use_cpu=True, seed=0)
    est_cfg = EstimateConfig(estimate_steps=6, plan_search_examples=16, candidate_ratios=RATIOS)
    plan_cfg = PlanConfig(structure_score="taylor")
    return estimate(ModelConfig(str(tiny_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16),
                    PeftSettings(), est_cfg, args, save=False, plan_cfg=plan_cfg)


def test_every_candidate_is_scored_and_the_gates_are_restored(scored_estimate):
    search = scored_estimate.meta["plan_candidates"]
    assert len(search["candidates"]) == len(RATIOS) ** 2 and search["examples"] == 16
    unpruned = next(c for c in search["candidates"] if c["head_ratio"] == c["ffn_ratio"] == 0)
    assert unpruned["metric"] == search["reference"]["metric"] and unpruned["predicted_drop"] == 0
    # the saved gates are the trained ones, not the last candidate's 0/1 pattern
    gates = torch.cat([scored_estimate.head_masks.flatten(), scored_estimate.ffn_masks.flatten()])
    assert ((gates != 0) & (gates != 1)).any()


def test_make_plan_takes_the_ratios_the_accuracy_allows(scored_estimate, monkeypatch):
    # the tiny model is still at chance after 6 steps; the guard for that is tested on its own above
    monkeypatch.setattr("lightpeft.methods.light_peft.plan_search.MIN_INFORMATIVE_POINTS", float("-inf"))
    loose = make_plan(scored_estimate, PlanConfig(structure_score="taylor", max_metric_drop=1e9))
    assert (loose.ratios["head_ratio"], loose.ratios["ffn_ratio"]) == (0.5, 0.5)  # the cheapest candidate
    strict = make_plan(scored_estimate, PlanConfig(structure_score="taylor", max_metric_drop=0.0))
    choice = strict.ratios["accuracy_choice"]
    assert choice["predicted_drop"] <= 0.0
    kept = lambda plan: sum(map(len, plan.heads)) + sum(map(len, plan.ffn))  # noqa: E731
    assert kept(strict) >= kept(loose)
    monkeypatch.undo()  # with the guard on, this model at chance prunes no structure
    guarded = make_plan(scored_estimate, PlanConfig(structure_score="taylor", max_metric_drop=1e9))
    assert guarded.ratios["accuracy_choice"]["uninformative"] and kept(guarded) == kept(
        make_plan(scored_estimate, PlanConfig(head_ratio=0, ffn_ratio=0)))
    with pytest.raises(LightPeftError, match="other settings"):
        make_plan(scored_estimate, PlanConfig(structure_score="gate", max_metric_drop=1.0))


def test_taylor_and_gate_scores_give_their_own_plans(scored_estimate):
    by_gate = make_plan(scored_estimate, PlanConfig(structure_score="gate"))
    by_taylor = make_plan(scored_estimate, PlanConfig(structure_score="taylor"))
    assert scored_estimate.head_taylor is not None
    assert by_gate.ffn != by_taylor.ffn or by_gate.heads != by_taylor.heads


def test_a_candidates_prediction_is_the_pruned_models_metric_before_training(scored_estimate, tiny_model_dir,
                                                                            tiny_csv, tmp_path):
    """Binarised gates on the estimation model == the physically pruned model carrying every estimated module."""
    from transformers import Trainer, TrainingArguments

    from lightpeft import prune
    from lightpeft.metrics import MAIN_METRIC
    from lightpeft.stages.prepare import load_task_base, prepare

    model_cfg, data_cfg = ModelConfig(str(tiny_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16)
    prepared = prepare(model_cfg, data_cfg)
    _, holdout = split_holdout(prepared.train_ds, 16, seed=0)  # the rows estimation held out (its seed is 0)
    plan = make_plan(scored_estimate, PlanConfig(structure_score="taylor", head_ratio=0.5, ffn_ratio=0.5,
                                                 module_ratio=0, rank_ratio=0))
    model = prune(load_task_base(model_cfg, prepared.task), plan, scored_estimate)
    parts = prepared.trainer_parts()
    trainer = Trainer(model=model, args=TrainingArguments(str(tmp_path), per_device_eval_batch_size=8, use_cpu=True,
                                                          report_to=[]),
                      data_collator=parts.collator, compute_metrics=parts.compute_metrics)
    measured = trainer.evaluate(holdout)
    search = scored_estimate.meta["plan_candidates"]
    candidate = next(c for c in search["candidates"] if c["head_ratio"] == c["ffn_ratio"] == 0.5)
    assert measured["eval_" + MAIN_METRIC[prepared.task.metric_kind]] == pytest.approx(candidate["metric"], abs=1e-6)
    assert measured["eval_loss"] == pytest.approx(candidate["loss"], abs=1e-7)  # continuous: a real check
    assert abs(candidate["loss"] - search["reference"]["loss"]) > 1e-6  # pruning changed it
    assert sum(map(len, plan.heads)) < plan.num_layers * plan.num_heads  # something was pruned


def test_an_estimation_model_at_chance_prunes_no_structure():
    """Candidates all read about chance early in a short run: nothing can be certified, so nothing is pruned."""
    drops = {(h, f): 0.0 for h in RATIOS for f in RATIOS}
    search = fake_search(drops)
    search["reference"]["chance"] = 0.88  # majority class: the unpruned model (0.9) beats it by 2 points only
    chosen, record = choose_ratios(search, PlanConfig(max_metric_drop=1.0), ratio_cost)
    assert (chosen.head_ratio, chosen.ffn_ratio) == (0.0, 0.0) and record["uninformative"]
    search["reference"]["chance"] = 0.6
    chosen, record = choose_ratios(search, PlanConfig(max_metric_drop=1.0), ratio_cost)
    assert (chosen.head_ratio, chosen.ffn_ratio) == (0.5, 0.5) and not record["uninformative"]


def test_constant_predictor_is_the_majority_class():
    from datasets import Dataset

    from lightpeft.methods.light_peft.plan_search import constant_predictor_metric

    rows = Dataset.from_dict({"labels": [1, 1, 1, 0]})
    assert constant_predictor_metric(rows, "accuracy") == pytest.approx(0.75)
    assert constant_predictor_metric(rows, "mcc") == pytest.approx(0.0)
    assert constant_predictor_metric(rows, "pearson") is None
    # a user's own dataset (LightPeft.prune) names the column as transformers' collators accept it
    assert constant_predictor_metric(Dataset.from_dict({"label": [0, 1, 0, 0]}), "accuracy") == pytest.approx(0.75)


def test_a_search_that_could_not_run_keeps_the_fixed_ratios_and_says_why():
    cfg = PlanConfig(max_metric_drop=1.0, head_ratio=0.2, ffn_ratio=0.1)
    chosen, record = choose_ratios({"skipped": "extractive QA"}, cfg, ratio_cost)
    assert (chosen.head_ratio, chosen.ffn_ratio) == (0.2, 0.1) and record["skipped"] == "extractive QA"


def test_estimation_floor_is_capped_at_half_the_run():
    from lightpeft.methods.light_peft.estimate import estimation_steps

    assert estimation_steps(EstimateConfig(min_estimate_steps=60), 250) == 60  # 10% would be 25
    assert estimation_steps(EstimateConfig(min_estimate_steps=60), 100) == 50
    assert estimation_steps(EstimateConfig(min_estimate_steps=60), 1000) == 100  # the fraction is larger
    assert estimation_steps(EstimateConfig(min_estimate_steps=60, estimate_steps=7), 1000) == 7
