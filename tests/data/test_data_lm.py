"""Causal-LM data: prompt/response loading, labels masking exactly the prompt, chat template, truncation, collator,
and the loss a causal LM computes on the collated batch (response tokens only)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lightpeft import assets
from lightpeft.data import IGNORE_INDEX, make_collator, tokenize_task
from lightpeft.data.lm import fit_to_length
from lightpeft.errors import LightPeftError
from lightpeft.metrics import compute_metrics, token_nll_for_metrics

from helpers import load, load_error

RECORDS = [{"prompt": f"say w{i} twice", "response": f"w{i} w{i}"} for i in range(10)]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def word_tokenizer():
    """Whitespace word-level tokenizer with EOS and no pad token (decoder style), ids known by construction."""
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "</s>": 1, "\n": 2, "say": 3, "twice": 4, **{f"w{i}": 5 + i for i in range(10)}}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(
        [tokenizers.pre_tokenizers.Split(" ", behavior="removed"), tokenizers.pre_tokenizers.Split("\n", "isolated")]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>")


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    try:
        path = assets.smollm2_dir()
    except LightPeftError as err:
        pytest.skip(str(err))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


# ----------------------------------------------------------------------------------------------------------------
# Loading


def test_prompt_response_jsonl_is_a_causal_lm_task(tmp_path):
    task = load(write_jsonl(tmp_path / "chat.jsonl", RECORDS), validation_fraction=0.2)
    assert (task.name, task.kind, task.metric_kind, task.num_labels) == ("chat", "causal_lm", "perplexity", None)
    assert task.train.column_names == ["prompt", "response"] and (len(task.train), len(task.eval)) == (8, 2)
    assert sorted([*task.train["prompt"], *task.eval["prompt"]]) == sorted(r["prompt"] for r in RECORDS)


def test_alpaca_layout_joins_instruction_and_input(tmp_path):
    records = [
        {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
        {"instruction": "Name a colour.", "input": "", "output": "red"},
    ]
    path = write_jsonl(tmp_path / "alpaca.jsonl", records)
    task = load(path, validation_file=str(path))
    assert list(task.eval["prompt"]) == ["Translate to French.\n\ncat", "Name a colour."]
    assert list(task.eval["response"]) == ["chat", "red"]


def test_json_list_file_and_validation_file(tmp_path):
    train = tmp_path / "train.json"
    train.write_text(json.dumps(RECORDS))
    dev = write_jsonl(tmp_path / "dev.jsonl", RECORDS[:3])
    task = load(train, validation_file=str(dev))
    assert (len(task.train), len(task.eval), task.kind) == (10, 3, "causal_lm")


def test_file_with_label_column_stays_a_classification_table(tmp_path):
    records = [{"prompt": "a", "response": "b", "text": f"t{i}", "label": i % 2} for i in range(4)]
    assert load(write_jsonl(tmp_path / "x.jsonl", records)).kind == "classification"


def test_records_without_text_are_reported(tmp_path):
    records = [*RECORDS[:3], {"prompt": "p", "response": None}]
    message = load_error(write_jsonl(tmp_path / "bad.jsonl", records))
    assert "no text in 'response'" in message and "record 4" in message
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"question": "q"}])
    good = write_jsonl(tmp_path / "good.jsonl", RECORDS)
    assert "no prompt/response columns" in load_error(good, validation_file=str(dev))


def test_prompt_response_file_rejects_column_options(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", RECORDS)
    assert "--text_column" in load_error(path, text_column="prompt")


# ----------------------------------------------------------------------------------------------------------------
# Tokenization: labels mask exactly the prompt


def test_labels_mask_exactly_the_prompt(word_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", RECORDS)
    task = load(path, validation_file=str(path))
    _, evaluation = tokenize_task(task, word_tokenizer, max_seq_length=32)
    first = evaluation[0]  # "say w0 twice" + "\n" | "w0 w0" + EOS
    assert first["input_ids"] == [3, 5, 4, 2, 5, 5, 1]
    assert first["labels"] == [IGNORE_INDEX] * 4 + [5, 5, 1]
    assert first["attention_mask"] == [1] * 7
    assert evaluation.column_names == ["input_ids", "attention_mask", "labels"]


def test_smollm2_plain_format_labels_are_response_and_eos(smollm2_tokenizer, tmp_path):
    records = [{"prompt": "What is the capital of France?", "response": "Paris is the capital."}]
    path = write_jsonl(tmp_path / "q.jsonl", records)
    _, evaluation = tokenize_task(load(path, validation_file=str(path)), smollm2_tokenizer, 64)
    ids, labels = np.array(evaluation[0]["input_ids"]), np.array(evaluation[0]["labels"])
    scored = labels != IGNORE_INDEX
    assert scored.sum() > 0 and not scored[: np.argmax(scored)].any() and scored[np.argmax(scored):].all()
    assert smollm2_tokenizer.decode(ids[~scored]) == "What is the capital of France?\n"
    assert smollm2_tokenizer.decode(ids[scored]) == "Paris is the capital." + smollm2_tokenizer.eos_token
    assert (labels[scored] == ids[scored]).all()


def test_smollm2_chat_template_labels_are_the_assistant_turn(smollm2_tokenizer, tmp_path):
    records = [{"prompt": "Hi there", "response": "Hello! How can I help?"}]
    path = write_jsonl(tmp_path / "q.jsonl", records)
    _, evaluation = tokenize_task(load(path, validation_file=str(path)), smollm2_tokenizer, 128,
                                  use_chat_template=True)
    ids, labels = np.array(evaluation[0]["input_ids"]), np.array(evaluation[0]["labels"])
    scored = labels != IGNORE_INDEX
    prompt_text = smollm2_tokenizer.decode(ids[~scored])
    assert prompt_text.endswith("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")
    assert smollm2_tokenizer.decode(ids[scored]) == "Hello! How can I help?<|im_end|>\n"


def test_chat_template_flag_needs_a_template(word_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", RECORDS)
    with pytest.raises(LightPeftError, match="drop --use_chat_template"):
        tokenize_task(load(path), word_tokenizer, 32, use_chat_template=True)


@pytest.mark.parametrize(
    "prompt_length, response_length, max_length, kept",
    [
        (3, 4, 10, (3, 4)),  # fits
        (3, 9, 10, (3, 7)),  # response cut at its end
        (9, 9, 10, (5, 5)),  # prompt loses its start, response keeps max_length // 2
        (20, 2, 10, (8, 2)),  # short response kept whole
        (5, 5, 1, (0, 1)),  # degenerate length: one response token
    ],
)
def test_fit_to_length(prompt_length, response_length, max_length, kept):
    prompt, response = list(range(prompt_length)), list(range(100, 100 + response_length))
    cut_prompt, cut_response = fit_to_length(prompt, response, max_length)
    assert (len(cut_prompt), len(cut_response)) == kept
    assert cut_prompt == prompt[len(prompt) - kept[0]:] and cut_response == response[: kept[1]]


def test_long_examples_keep_response_labels(word_tokenizer, tmp_path):
    long_prompt = [{"prompt": " ".join(["say"] * 40), "response": "w1 w2 w3"}] * 2
    path = write_jsonl(tmp_path / "long.jsonl", long_prompt)
    train, _ = tokenize_task(load(path), word_tokenizer, max_seq_length=8)
    assert train[0]["input_ids"] == [3, 3, 3, 2, 6, 7, 8, 1]  # the prompt keeps its end: "say say say \n"
    assert train[0]["labels"] == [IGNORE_INDEX] * 4 + [6, 7, 8, 1]


# ----------------------------------------------------------------------------------------------------------------
# Collator and the loss it leads to


def test_collator_pads_labels_with_ignore_index(word_tokenizer, tmp_path):
    records = [{"prompt": "say w1", "response": "w1"}, {"prompt": "say", "response": "w2 w2 w2 w2 w2"}]
    path = write_jsonl(tmp_path / "c.jsonl", records)
    task = load(path, validation_file=str(path))
    _, evaluation = tokenize_task(task, word_tokenizer, 32)
    batch = make_collator(task, word_tokenizer)([evaluation[0], evaluation[1]])
    assert batch["input_ids"].shape == (2, 8)  # longest is 7 tokens, padded to a multiple of 8
    assert batch["input_ids"][0].tolist() == [3, 6, 2, 6, 1, 1, 1, 1]  # padded with EOS (no pad token)
    assert batch["attention_mask"][0].tolist() == [1] * 5 + [0] * 3
    assert batch["labels"][0].tolist() == [IGNORE_INDEX] * 3 + [6, 1] + [IGNORE_INDEX] * 3  # real EOS scored only


def test_causal_lm_loss_covers_only_response_tokens(word_tokenizer, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    path = write_jsonl(tmp_path / "chat.jsonl", RECORDS[:4])
    task = load(path, validation_file=str(path))
    _, evaluation = tokenize_task(task, word_tokenizer, 32)
    batch = make_collator(task, word_tokenizer)([evaluation[i] for i in range(4)])
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        output = model(**batch)
    # Hand-computed: mean cross-entropy of the tokens after the prompt (3 per row: 2 words + EOS).
    logits, labels = output.logits[:, :-1], batch["labels"][:, 1:]
    scored = labels != IGNORE_INDEX
    assert int(scored.sum()) == 4 * 3
    manual = torch.nn.functional.cross_entropy(logits[scored], labels[scored])
    assert output.loss.item() == pytest.approx(manual.item(), rel=1e-5)
    # The perplexity metric path (preprocess_logits_for_metrics + compute_metrics) gives the same mean NLL.
    nll = token_nll_for_metrics(output.logits, batch["labels"])
    result = compute_metrics("perplexity", nll.numpy(), batch["labels"].numpy())
    assert result["nll"] == pytest.approx(manual.item(), rel=1e-5)
    assert result["perplexity"] == pytest.approx(float(np.exp(manual.item())), rel=1e-5)
