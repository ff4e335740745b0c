"""The model side of the non-classification task kinds: regression (the head starts at the mean score),
extractive QA (span head `qa_outputs`) and causal-LM fine-tuning on prompt/response records (loss on the response,
perplexity, lower is better), each through estimate -> plan -> prune -> train, reload, export and predict. QA data:
tests/fixtures/squad_mini.json (real Wikipedia text, questions written for these tests)."""

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    BertConfig,
    BertModel,
    BertTokenizerFast,
    GPT2Config,
    LlamaConfig,
)

from lightpeft import (
    DataConfig,
    EstimateConfig,
    LightPeftError,
    LightPeftTrainingArguments,
    ModelConfig,
    PeftSettings,
    PlanConfig,
    export_run,
    load_exported,
    load_pruned,
    run,
)
from lightpeft.bench.aggregate import compute_ratios, metric_delta, summarise_arm
from lightpeft.bench.latency import batches_of
from lightpeft.cli import main
from lightpeft.core.counts import count_plan
from lightpeft.core.heads import check_kind, init_regression_bias
from lightpeft.core.models import load_base, load_tokenizer
from lightpeft.core.peft_kinds import hf_model, wrap_with_lora
from lightpeft.core.surgery import prune_backbone
from lightpeft.data import load_task, make_collator, tokenize_task
from lightpeft.methods.light_peft import masks
from lightpeft.stages.predict import load_predictor, predict_texts
from lightpeft.stages.prepare import load_task_base

from conftest import save_tiny_model_dir, tiny_batch, tiny_config, tiny_model
from helpers import SQUAD_MINI, adapters_everywhere, random_plan

LM_WORDS = ["say", "twice", *(f"w{i}" for i in range(60))]
CAUSAL_LM_CONFIGS = {
    # SmolLM2-like: grouped-query attention (6 query heads over 2 KV heads), lm_head tied to the input embeddings
    "llama": lambda: LlamaConfig(vocab_size=70, hidden_size=48, num_hidden_layers=2, num_attention_heads=6,
                                 num_key_value_heads=2, head_dim=8, intermediate_size=37, max_position_embeddings=64,
                                 pad_token_id=0, bos_token_id=None, eos_token_id=1, tie_word_embeddings=True),
    "gpt2": lambda: GPT2Config(vocab_size=70, n_embd=32, n_layer=2, n_head=4, n_inner=37, n_positions=64,
                               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0, bos_token_id=1,
                               eos_token_id=1),
}


def training_args(out, epochs: int = 2) -> LightPeftTrainingArguments:
    return LightPeftTrainingArguments(output_dir=str(out), num_train_epochs=epochs, per_device_train_batch_size=8,
                                      learning_rate=5e-3, disable_tqdm=True, seed=0, use_cpu=True, report_to=[])


def eval_history(run_dir: Path, key: str) -> list[float]:
    history = json.loads((run_dir / "log_history.json").read_text())["log_history"]
    return [entry[key] for entry in history if key in entry]


# ------------------------------------------------------------------------------------------------ fixtures


def save_squad_base(directory: Path) -> Path:
    """A headless tiny BERT and a WordPiece tokenizer whose vocabulary is every word of squad_mini (so questions and
    contexts tokenize to real word ids, not [UNK])."""
    from tokenizers.pre_tokenizers import BertPreTokenizer

    directory.mkdir(parents=True)
    content = json.loads(SQUAD_MINI.read_text(encoding="utf-8"))
    texts = [text for article in content["data"] for paragraph in article["paragraphs"]
             for text in [paragraph["context"], *(qa["question"] for qa in paragraph["qas"])]]
    words = sorted({word for text in texts for word, _ in BertPreTokenizer().pre_tokenize_str(text.lower())})
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast(vocab=str(directory / "vocab.txt"), do_lower_case=True).save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=128)
    BertModel(config).save_pretrained(directory)
    return directory


def save_causal_lm_base(directory: Path, family: str) -> Path:
    """A tiny random-init causal LM checkpoint with a word-level tokenizer (EOS `</s>`, no BOS), as saved by
    `save_pretrained`."""
    import tokenizers
    from transformers import PreTrainedTokenizerFast

    directory.mkdir(parents=True)
    vocab = {"<pad>": 0, "</s>": 1, "\n": 2, **{word: 3 + i for i, word in enumerate(LM_WORDS)}}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(
        [tokenizers.pre_tokenizers.Split(" ", behavior="removed"), tokenizers.pre_tokenizers.Split("\n", "isolated")])
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", pad_token="<pad>").save_pretrained(directory)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(CAUSAL_LM_CONFIGS[family]()).save_pretrained(directory)
    return directory


def write_prompt_response(path: Path, rows: int = 40) -> Path:
    rng = random.Random(0)
    records = []
    for _ in range(rows):
        word = rng.choice(LM_WORDS[2:])
        records.append({"prompt": f"say {word} twice", "response": f"{word} {word}"})
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("qa")
    base = save_squad_base(root / "base")
    data = DataConfig(task=str(SQUAD_MINI), max_seq_length=64, validation_fraction=0.3)
    result = run(ModelConfig(str(base)), data, PeftSettings(), EstimateConfig(estimate_steps=2), PlanConfig(),
                 training_args(root / "run"))
    return base, root / "run", result, data


@pytest.fixture(scope="module")
def prompt_response_file(tmp_path_factory):
    return write_prompt_response(tmp_path_factory.mktemp("lm-data") / "say_twice.jsonl")


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory, prompt_response_file):
    """`get(family, peft)` -> (base dir, run dir, RunResult, DataConfig), trained once per module."""
    trained = {}

    def get(family: str, peft: str = "lora"):
        if (family, peft) not in trained:
            root = tmp_path_factory.mktemp(f"lm-{family}-{peft}")
            base = save_causal_lm_base(root / "base", family)
            data = DataConfig(task=str(prompt_response_file), max_seq_length=16, validation_fraction=0.2)
            result = run(ModelConfig(str(base)), data, PeftSettings(peft=peft), EstimateConfig(estimate_steps=2),
                         PlanConfig(head_ratio=0.5), training_args(root / "run"))
            trained[family, peft] = (base, root / "run", result, data)
        return trained[family, peft]

    return get


def eval_batch(base: Path, data: DataConfig, rows: int = 4) -> dict:
    """Collated eval features of the task, as the Trainer batches them (model inputs and labels)."""
    task = load_task(data)
    tokenizer = load_tokenizer(str(base))
    _, eval_ds = tokenize_task(task, tokenizer, data.max_seq_length)
    return make_collator(task, tokenizer)([eval_ds[i] for i in range(min(rows, len(eval_ds)))])


# ------------------------------------------------------------------------------------------------ extractive QA


def test_qa_run_reports_em_f1_and_reloads_to_the_same_span_logits(qa_run):
    base, run_dir, result, data = qa_run
    for name in ["run.json", "plan.json", "peft_weights.safetensors", "estimate/estimate.json", "log_history.json"]:
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["task"]["kind"] == "qa" and summary["metric"] == "f1" and summary["greater_is_better"]
    assert {"eval_exact_match", "eval_f1"} <= set(summary["final_eval"])
    assert 0.0 <= summary["final_eval"]["eval_exact_match"] <= summary["final_eval"]["eval_f1"] <= 1.0
    assert summary["best_metric"] == max(eval_history(run_dir, "eval_f1"))
    estimate = json.loads((run_dir / "estimate" / "estimate.json").read_text())
    assert estimate["task_kind"] == "qa"
    # the span head trains and travels with the PEFT weights; the base stays frozen
    weights = load_file(run_dir / "peft_weights.safetensors")
    assert {"qa_outputs.weight", "qa_outputs.bias"} <= set(weights)
    trainable = {n for n, p in result.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "qa_outputs.modules_to_save" in n for n in trainable)
    assert any("qa_outputs.modules_to_save" in n for n in trainable)
    # BERT's QA model has no pooler: the counts come from the QA class, not a classifier
    assert result.plan.counts["foundation_params_before"] == sum(
        p.numel() for p in load_base(str(base), kind="qa").model.base_model.parameters())

    batch = eval_batch(base, data)
    assert "token_type_ids" in batch and "start_positions" in batch
    loaded = load_pruned(None, run_dir)
    with torch.no_grad():
        expected, got = result.model(**batch), loaded(**batch)
    assert torch.allclose(got.start_logits, expected.start_logits, atol=1e-5)
    assert torch.allclose(got.end_logits, expected.end_logits, atol=1e-5)


def test_qa_lora_passes_token_type_ids_to_bert():
    """peft 0.21's PeftModelForQuestionAnswering drops token_type_ids; our QA LoRA model must not."""
    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_config(tiny_config("bert", num_labels=2)).eval()
    ids = torch.randint(5, 100, (1, 8))
    segments = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        with_segments = model(input_ids=ids, token_type_ids=segments).start_logits
        without = model(input_ids=ids).start_logits
    assert not torch.allclose(with_segments, without)
    peft_model = wrap_with_lora(model, ["bert.encoder.layer.0.attention.self.query"], r=2, alpha=4.0,
                                dropout=0.0).eval()
    assert peft_model.modules_to_save == {"qa_outputs"}
    with torch.no_grad():
        assert torch.allclose(peft_model(input_ids=ids, token_type_ids=segments).start_logits, with_segments)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_masked_qa_model_equals_the_physically_pruned_one(family):
    def qa_model():
        torch.manual_seed(0)
        return AutoModelForQuestionAnswering.from_config(tiny_config(family, num_labels=2)).eval()

    plan = random_plan(qa_model(), PlanConfig(head_ratio=0.5, head_scope="global", ffn_ratio=0.5),
                       kill_heads_layer=0)
    pruned = prune_backbone(qa_model(), plan)
    masked = qa_model()
    masks.set_binary(masks.attach_gates(masked, requires_grad=False).gates, plan.heads, plan.ffn)
    batch = {"input_ids": torch.randint(5, 100, (2, 9)), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    with torch.no_grad():
        a, b = pruned(**batch), masked(**batch)
    assert torch.allclose(a.start_logits, b.start_logits, atol=1e-5)
    assert torch.allclose(a.end_logits, b.end_logits, atol=1e-5)


def test_llama_qa_model_loads_the_backbone_of_a_causal_lm_checkpoint(tmp_path):
    """transformers keeps LlamaForQuestionAnswering's backbone under `transformer`; causal-LM checkpoints say
    `model`. Only the span head may be fresh."""
    base_dir = save_causal_lm_base(tmp_path / "llama", "llama")
    qa = load_base(str(base_dir), kind="qa")
    assert qa.fresh_keys == ["qa_outputs.bias", "qa_outputs.weight"]
    lm = AutoModelForCausalLM.from_pretrained(base_dir)
    assert torch.equal(qa.model.base_model.layers[1].mlp.down_proj.weight, lm.model.layers[1].mlp.down_proj.weight)


def test_qa_predict_answers_with_spans_of_the_context(qa_run):
    _, run_dir, _, _ = qa_run
    contexts = ["The Eiffel Tower is in Paris. It was finished in 1889 for the world's fair.",
                "Persian cats have long hair and a round face."]
    rows = predict_texts(load_predictor(run_dir), ["When was it finished?", "What hair do they have?"], contexts)
    assert [row["context"] for row in rows] == contexts
    assert all(row["answer"] and row["answer"] in row["context"] for row in rows)


# ------------------------------------------------------------------------------------------------ causal LM


@pytest.mark.parametrize("family, peft", [("llama", "lora"), ("gpt2", "lora"), ("gpt2", "adapter")])
def test_causal_lm_run_reports_perplexity_lowest_best_and_reloads(family, peft, lm_runs):
    base, run_dir, result, data = lm_runs(family, peft)
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["task"]["kind"] == "causal_lm" and summary["metric"] == "perplexity"
    assert summary["greater_is_better"] is False
    scores = eval_history(run_dir, "eval_perplexity")
    assert len(set(scores)) == 2 and summary["best_metric"] == min(scores)  # lower is better
    # only PEFT modules train: lm_head (tied to the embeddings on the Llama config) and embeddings stay frozen
    model = hf_model(result.model)
    assert not model.lm_head.weight.requires_grad and not model.get_input_embeddings().weight.requires_grad
    fresh = AutoModelForCausalLM.from_pretrained(base)
    assert torch.equal(model.get_input_embeddings().weight, fresh.get_input_embeddings().weight)
    assert torch.equal(model.lm_head.weight, fresh.lm_head.weight)
    if family == "llama":
        assert model.lm_head.weight is model.get_input_embeddings().weight
        assert result.plan.num_kv_heads == 2 and all(len(kv) == 1 for kv in result.plan.kv_heads)

    batch = eval_batch(base, data)
    loaded = load_pruned(None, run_dir)
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, result.model(**batch).logits, atol=1e-5)
    prompt = {"input_ids": torch.tensor([[3, 10, 4, 2]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    generated = loaded.generate(**prompt, max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0)
    assert generated.shape == (1, 9)
    assert torch.equal(generated, result.model.generate(**prompt, max_new_tokens=5, min_new_tokens=5,
                                                        do_sample=False, pad_token_id=0))


def test_causal_lm_run_distills_from_its_estimation_model(prompt_response_file, tmp_path):
    """`--distill_weight` on a decoder: the teacher is rebuilt with peft's CAUSAL_LM wrapper and gates, the per-token
    KL runs on the response tokens, and the run records it."""
    base = save_causal_lm_base(tmp_path / "base", "llama")
    data = DataConfig(task=str(prompt_response_file), max_seq_length=16, validation_fraction=0.2)
    args = LightPeftTrainingArguments(output_dir=str(tmp_path / "run"), max_steps=3, per_device_train_batch_size=8,
                                      learning_rate=5e-3, disable_tqdm=True, seed=0, use_cpu=True, report_to=[],
                                      logging_steps=1, distill_weight=0.5)
    result = run(ModelConfig(str(base)), data, PeftSettings(), EstimateConfig(estimate_steps=2),
                 PlanConfig(head_ratio=0.5), args)
    assert result.summary["distillation"]["weight"] == 0.5 and result.summary["optimizer_steps"] == 3
    losses = [h["loss"] for h in json.loads((tmp_path / "run" / "log_history.json").read_text())["log_history"]
              if "loss" in h]
    assert len(losses) == 3 and all(0 < loss < 100 for loss in losses)


def test_qa_distillation_is_refused_before_estimation(tmp_path):
    base = save_squad_base(tmp_path / "base")
    data = DataConfig(task=str(SQUAD_MINI), max_seq_length=64, validation_fraction=0.3)
    args = LightPeftTrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, use_cpu=True, report_to=[],
                                      distill_weight=0.5)
    with pytest.raises(LightPeftError, match="not extractive QA") as err:
        run(ModelConfig(str(base)), data, PeftSettings(), EstimateConfig(estimate_steps=2), PlanConfig(), args)
    assert "\n" not in str(err.value) and not (tmp_path / "run").exists()


def test_causal_lm_loss_and_perplexity_cover_the_response_tokens_only(lm_runs):
    base, run_dir, result, data = lm_runs("llama", "lora")
    batch = eval_batch(base, data, rows=64)
    labels = batch["labels"]
    with torch.no_grad():
        logits = result.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none",
                                            ignore_index=-100)  # (B, T-1)
    response = labels[:, 1:] != -100
    # prompts are "say <w> twice\n": 4 tokens without loss, then "<w> <w> </s>"
    assert response.sum(dim=1).tolist() == [3] * len(labels)
    final = json.loads((run_dir / "run.json").read_text())["final_eval"]
    assert final["eval_nll"] == pytest.approx(nll[response].mean().item(), rel=1e-4)
    assert final["eval_loss"] == pytest.approx(final["eval_nll"], rel=1e-4)
    prompt_scored = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2),
                                                      batch["input_ids"][:, 1:], reduction="none")
    assert final["eval_nll"] != pytest.approx(prompt_scored[batch["attention_mask"][:, 1:].bool()].mean().item(),
                                              rel=1e-3)


def test_causal_lm_export_round_trip_keeps_lm_head_tied(lm_runs, tmp_path):
    base, run_dir, result, data = lm_runs("llama", "lora")
    export_dir = export_run(run_dir, tmp_path / "export")
    assert json.loads((export_dir / "export.json").read_text())["task"]["kind"] == "causal_lm"
    stored = load_file(export_dir / "model.safetensors")
    assert "lm_head.weight" not in stored and "model.embed_tokens.weight" in stored  # tied: stored once
    exported = load_exported(export_dir)
    assert exported.lm_head.weight is exported.model.embed_tokens.weight
    batch = eval_batch(base, data)
    with torch.no_grad():
        assert torch.allclose(exported(**batch).logits, result.model(**batch).logits, atol=1e-4)
    rows = predict_texts(load_predictor(export_dir), ["say w3 twice"], max_new_tokens=3)
    assert rows[0]["prompt"] == "say w3 twice" and isinstance(rows[0]["response"], str)


def test_load_tasks_shares_a_causal_lm_backbone(lm_runs):
    from lightpeft import load_tasks

    base, run_dir, result, data = lm_runs("llama", "lora")
    models = load_tasks(None, {"first": run_dir, "second": run_dir})
    batch = eval_batch(base, data)
    first, second = (hf_model(models[name]) for name in ("first", "second"))
    assert first.model.embed_tokens.weight.data_ptr() == second.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        expected = result.model(**batch).logits
        for model in models.values():
            assert torch.allclose(model(**batch).logits, expected, atol=1e-5)


def test_causal_lm_predict_generates_for_each_prompt(lm_runs, capsys):
    _, run_dir, _, _ = lm_runs("gpt2", "lora")
    assert main(["predict", "--run_dir", str(run_dir), "--text", "say w5 twice", "say w9", "--max_new_tokens",
                 "4"]) == 0
    table = capsys.readouterr().out
    assert "| prompt | response |" in table and "say w9" in table
    with pytest.raises(LightPeftError, match="continues prompts"):
        predict_texts(load_predictor(run_dir), ["say w5"], ["a pair"])


# ------------------------------------------------------------------------------------------------ bad input


def test_encoder_asked_for_causal_lm_is_a_one_line_error(tiny_model_dir, prompt_response_file, tmp_path, capsys):
    code = main(["run", "--model_name_or_path", str(tiny_model_dir), "--task", str(prompt_response_file),
                 "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is an encoder" in err[0] and "llama" in err[0]
    assert not (tmp_path / "out").exists()
    with pytest.raises(LightPeftError, match="unknown task kind"):
        check_kind(tiny_config("llama"), "translation")


# ------------------------------------------------------------------------------------------------ counts, bench


def test_counts_come_from_the_task_class():
    torch.manual_seed(0)
    qa = AutoModelForQuestionAnswering.from_config(tiny_config("bert", num_labels=2))
    plan = random_plan(qa, PlanConfig())
    counts = count_plan(plan, qa.config, kind="qa")
    assert counts["foundation_params_before"] == sum(p.numel() for p in qa.base_model.parameters())
    assert counts["foundation_params_after"] == sum(
        p.numel() for p in prune_backbone(qa, plan).base_model.parameters())


def test_bench_metric_delta_follows_the_metric_direction():
    def arm(metric: float, greater: bool) -> dict:
        return summarise_arm([{"best_metric": metric, "greater_is_better": greater, "train_throughput": 1.0,
                               "train_seconds": 1.0, "end_to_end_seconds": 1.0}])

    assert metric_delta(arm(0.80, True), arm(0.82, True)) == pytest.approx(-2.0)  # points
    assert metric_delta(arm(12.0, False), arm(10.0, False)) == pytest.approx(-2.0)  # perplexity: higher is worse
    light, vanilla = arm(9.5, False), arm(10.0, False)
    assert compute_ratios(light, vanilla)["metric_delta"] == pytest.approx(0.5)


def test_bench_batches_hold_only_model_inputs_of_qa_windows(qa_run):
    base, _, _, data = qa_run
    task = load_task(data)
    tokenizer = load_tokenizer(str(base))
    train_ds, eval_ds = tokenize_task(task, tokenizer, data.max_seq_length)
    assert {"example_id", "offset_mapping"} <= set(eval_ds.column_names)
    collator = make_collator(task, tokenizer)
    inference = batches_of(eval_ds, collator, 4, 4, torch.device("cpu"))
    assert set(inference[0]) == {"input_ids", "attention_mask", "token_type_ids"}
    training = batches_of(train_ds, collator, 4, 4, torch.device("cpu"), labels=True)
    assert {"start_positions", "end_positions"} <= set(training[0])


def bench_arm(arm: str, base: Path, data: DataConfig, run_dir: Path, profile: bool = False) -> dict:
    """One benchmark arm (train, then rebuild + time inference) in this process, on a few examples."""
    from lightpeft.bench.arm import infer_arm, train_arm, training_args_to_json
    from lightpeft.config import to_dict

    spec = {"arm": arm, "seed": 0, "run_dir": str(run_dir), "profile": profile, "infer_batch_sizes": [1, 4],
            "infer_examples": 4, "training": training_args_to_json(training_args(run_dir, epochs=1)),
            "configs": to_dict(ModelConfig(str(base)), data, PeftSettings(), EstimateConfig(estimate_steps=2),
                               PlanConfig(head_ratio=0.5))}
    return train_arm(spec) | infer_arm(spec)


def test_bench_arms_run_on_causal_lm_and_qa_tasks(lm_runs, qa_run, tmp_path):
    from lightpeft.bench.report import markdown

    base, _, _, data = lm_runs("llama", "lora")
    arms = {name: summarise_arm([bench_arm(arm, base, data, tmp_path / arm)])
            for name, arm in (("vanilla", "vanilla"), ("Light-PEFT", "light-peft"))}
    assert arms["vanilla"]["greater_is_better"] is False and arms["Light-PEFT"]["metric"] == "perplexity"
    ratios = compute_ratios(arms["Light-PEFT"], arms["vanilla"])
    assert ratios["metric_delta"] == pytest.approx(arms["vanilla"]["best_metric_mean"]
                                                   - arms["Light-PEFT"]["best_metric_mean"])
    assert ratios["forward_flops"] < 1 and ratios["train_step_flops"] < 1
    bench = {"label": "say twice", "description": "", "infer_batch_sizes": [1, 4], "arms": arms, "ratios": ratios,
             "targets": [], "environment": {}, "tradeoff": []}
    assert "dev perplexity (best)" in markdown(bench)

    base, _, _, data = qa_run
    qa = bench_arm("light-peft", base, data, tmp_path / "qa", profile=True)
    assert qa["metric"] == "f1" and qa["train_step_flops_per_example"]["backward"] > 0
    assert qa["profile"]["step_seconds"] > 0 and set(qa["inference"]) == {"1", "4"}


def test_adapters_train_the_qa_head_and_leave_lm_head_frozen():
    torch.manual_seed(0)
    qa = adapters_everywhere(AutoModelForQuestionAnswering.from_config(tiny_config("bert", num_labels=2)))
    assert qa.qa_outputs.weight.requires_grad and not qa.bert.embeddings.word_embeddings.weight.requires_grad
    lm = adapters_everywhere(AutoModelForCausalLM.from_config(CAUSAL_LM_CONFIGS["llama"]()))
    assert not lm.lm_head.weight.requires_grad


# ------------------------------------------------------------------------------------------------ real decoder

INSTRUCTIONS = [
    ("Name a primary colour.", "Red."), ("What is two plus two?", "Four."), ("Give the opposite of hot.", "Cold."),
    ("Name a fruit that is yellow.", "A banana."), ("What do bees make?", "Honey."),
    ("Which planet do we live on?", "Earth."), ("Say hello in French.", "Bonjour."),
    ("What is frozen water called?", "Ice."), ("How many legs does a spider have?", "Eight."),
    ("Name a large sea mammal.", "A whale."), ("What colour is grass?", "Green."),
    ("What is the plural of mouse?", "Mice."), ("Give a synonym of happy.", "Glad."),
    ("What do cows drink?", "Water."), ("Name the season after winter.", "Spring."),
    ("What is ten minus three?", "Seven."), ("Which animal barks?", "A dog."),
    ("What shape has three sides?", "A triangle."), ("Name a vegetable that is orange.", "A carrot."),
    ("What is the capital of Italy?", "Rome."),
]


@pytest.mark.slow
def test_smollm2_instruction_tuning_through_the_cli(tmp_path, capsys):
    """SmolLM2-135M-Instruct (Llama, 9 query heads over 3 KV heads, tied embeddings) pruned for a small instruction
    task through `lightpeft run` with its chat template, then reloaded and asked to generate (a minute on CPU)."""
    from lightpeft.assets import resolve_model_path

    try:
        resolve_model_path("smollm2")
    except LightPeftError as err:
        pytest.skip(str(err))
    data = tmp_path / "instructions.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in INSTRUCTIONS))
    out = tmp_path / "run"
    code = main(["run", "--model_name_or_path", "smollm2", "--task", str(data), "--output_dir", str(out),
                 "--use_chat_template", "true", "--max_seq_length", "48", "--validation_fraction", "0.2",
                 "--num_train_epochs", "1", "--per_device_train_batch_size", "4", "--estimate_steps", "2",
                 "--learning_rate", "1e-3", "--disable_tqdm", "true", "--report_to", "none"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "run.json").read_text())
    assert summary["task"]["kind"] == "causal_lm" and summary["task"]["use_chat_template"]
    assert summary["metric"] == "perplexity" and summary["best_metric"] == min(eval_history(out, "eval_perplexity"))
    assert summary["plan_counts"]["foundation_pruned_fraction"] > 0.1
    plan = json.loads((out / "plan.json").read_text())
    assert plan["num_kv_heads"] == 3 and all(len(kv) == 2 for kv in plan["kv_heads"])

    model = load_pruned(None, out)
    assert hf_model(model).lm_head.weight is hf_model(model).get_input_embeddings().weight
    rows = predict_texts(load_predictor(out), ["Name a colour of the sky."], max_new_tokens=8)
    assert rows[0]["response"].strip()


# ------------------------------------------------------------------------------------------------ regression heads


@pytest.mark.parametrize("family", ["bert", "roberta", "llama"])
def test_regression_bias_shifts_every_prediction_by_the_mean_score(family):
    model = tiny_model(family, num_labels=1)
    batch = tiny_batch()
    with torch.no_grad():
        before = model(**batch).logits
        has_bias = init_regression_bias(model, 2.7)
        after = model(**batch).logits
    # encoders' heads end in a biased 1-wide linear; Llama's `score` has no bias and stays as it was
    assert has_bias == (family != "llama")
    torch.testing.assert_close(after - before, torch.full_like(before, 2.7 if has_bias else 0.0))


def test_a_regression_task_base_starts_at_the_mean_training_score(base_model_dir, tmp_path):
    scores = [0.5 * (i % 11) for i in range(40)]
    rows = [f"w{i % 7 + 5} w{i % 5 + 20},{s}" for i, s in enumerate(scores)]
    (tmp_path / "sts.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    task = load_task(DataConfig(task=str(tmp_path / "sts.csv")))
    base = load_task_base(ModelConfig(model_name_or_path=str(base_model_dir)), task)
    assert task.is_regression
    assert base.model.classifier.bias.item() == pytest.approx(sum(task.train["label"]) / len(task.train), rel=1e-6)


def test_a_trained_regression_head_of_the_checkpoint_keeps_its_bias(tmp_path):
    model_dir = save_tiny_model_dir(tmp_path / "base")
    model = tiny_model("bert", num_labels=1)
    with torch.no_grad():
        model.classifier.bias.fill_(-1.25)  # as if fine-tuned on scores before
    model.save_pretrained(model_dir)
    (tmp_path / "sts.csv").write_text("text,label\n" + "\n".join(f"w{i % 9 + 5},{i % 4 + 0.5}" for i in range(20)))
    task = load_task(DataConfig(task=str(tmp_path / "sts.csv")))
    base = load_task_base(ModelConfig(model_name_or_path=str(model_dir)), task)
    assert base.model.classifier.bias.item() == pytest.approx(-1.25)


@pytest.mark.parametrize("family, expected", [("bert", {"bert.pooler"}), ("distilbert", {"pre_classifier"}),
                                              ("deberta-v2", {"pooler"}), ("modernbert", {"head"}),
                                              ("electra", set())])
def test_the_layers_before_a_classifier_train_with_it(family, expected):
    """peft's SEQ_CLS trains `classifier` only: DistilBERT's pre_classifier, DeBERTa's pooler and ModernBERT's head
    would stay frozen at their random init, BERT's pooler at the checkpoint's. lightpeft trains and saves them."""
    from families import DISCOVERED_ENCODERS
    from transformers import AutoModelForSequenceClassification

    from lightpeft.core import arch
    from lightpeft.core.heads import head_modules, pre_head_modules
    from lightpeft.core.peft_kinds import wrap_with_lora
    from lightpeft.core.peft_modules import trained_heads

    config = (BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=37) if family == "bert" else DISCOVERED_ENCODERS[family]())
    config.num_labels = 2
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    assert set(pre_head_modules(model)) == expected and expected <= set(head_modules(model))
    targets = arch.linear_names(model, ["q", "v"])
    lora = wrap_with_lora(model, targets, r=2, alpha=4.0, dropout=0.0)
    trained = trained_heads(lora)
    assert set(trained) == expected | {"classifier"}
    for name in expected:  # the copy that runs trains; the original stays frozen
        assert all(p.requires_grad for p in trained[name].parameters())
    # only LoRA and the head train, nothing of the backbone
    backbone_trained = [n for n, p in lora.named_parameters() if p.requires_grad
                 and "lora_" not in n and "modules_to_save" not in n]
    assert backbone_trained == []


def test_qa_and_causal_lm_models_have_no_layers_before_a_head():
    from lightpeft.core.heads import pre_head_modules

    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=37)
    assert pre_head_modules(AutoModelForQuestionAnswering.from_config(config)) == {}
    llama = LlamaConfig(vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=37)
    assert pre_head_modules(AutoModelForCausalLM.from_config(llama)) == {}
