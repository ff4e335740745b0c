"""The peer arm: LoRA fine-tuning as a user would write it with peft and `transformers.Trainer`, nothing else.

    python -m lightpeft.bench.peer --model_name_or_path minilm --task ../shared/data/SST-2 \\
        --max_train_samples 4000 --max_seq_length 64 --output_dir /tmp/peer --learning_rate 2e-3 \\
        --per_device_train_batch_size 16 --num_train_epochs 2 --eval_strategy epoch --save_strategy no --seed 42

(or `python -m lightpeft.bench.peer args.json`, every flag in one JSON file, as the HF example scripts take it).

It shares no model, PEFT or training code with lightpeft: the checkpoint loads with
`AutoModelForSequenceClassification`, peft's `LoraConfig` puts LoRA (r=8) on its default targets for the
architecture (BERT `query`/`value`, Llama `q_proj`/`v_proj`: LoRA q,v) and the classifier trains with the layers
just before it (BERT's pooler, as lightpeft trains them), `DataCollatorWithPadding` pads each
batch to its longest row (dynamic padding) and the stock `Trainer` trains. lightpeft is used only to read the
same rows (`load_task`: the same files, split and subsample), to find the packaged checkpoints (`minilm`,
`smollm2`) and to score with the same metric definitions. `lightpeft bench --arms vanilla light-peft peer` runs
it in its own process beside the other arms, with the same data, seed, batch size, epochs and learning rate, to
show that the vanilla arm trains as fast as this plain script.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)

from lightpeft.assets import resolve_model_path
from lightpeft.config import DataConfig
from lightpeft.data import load_task
from lightpeft.metrics import GREATER_IS_BETTER, MAIN_METRIC, make_hf_compute_metrics


@dataclass
class PeerArguments:
    model_name_or_path: str = field(default="minilm", metadata={"help": "Checkpoint directory, or minilm / smollm2."})
    task: str = field(default="rotten_tomatoes", metadata={"help": "What `lightpeft --task` takes (GLUE dir, ...)."})
    max_seq_length: int = field(default=128, metadata={"help": "Truncate inputs to this many tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many dev rows."})
    split_seed: int = field(default=0, metadata={"help": "Seed of lightpeft's subsample (same rows as its arms)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's choice)."})
    result_file: str | None = field(default=None, metadata={"help": "Write the metric and timings here (JSON)."})


def layers_before_classifier(model) -> list[str]:
    """The layers between backbone and classifier that SEQ_CLS leaves frozen (BERT's pooler, DistilBERT's
    pre_classifier, DeBERTa's pooler, ModernBERT's head): trained here as lightpeft trains them, so both arms
    train the same parameters."""
    names = [n for n in ("pre_classifier", "pooler", "head") if isinstance(getattr(model, n, None), torch.nn.Module)]
    backbone = getattr(model, model.base_model_prefix, None)
    if isinstance(getattr(backbone, "pooler", None), torch.nn.Module):
        names.append(f"{model.base_model_prefix}.pooler")
    return names


def train_peer(peer: PeerArguments, args: TrainingArguments) -> dict:
    """Fine-tune LoRA q,v on the task with a stock Trainer; the dev metric per epoch and the training time."""
    if peer.threads:
        torch.set_num_threads(peer.threads)
    task = load_task(DataConfig(task=peer.task, max_seq_length=peer.max_seq_length, split_seed=peer.split_seed,
                                max_train_samples=peer.max_train_samples, max_eval_samples=peer.max_eval_samples))
    if task.kind not in ("classification", "regression"):
        raise SystemExit(f"the peer script fine-tunes sequence classifiers only, not {task.kind} tasks")
    path = resolve_model_path(peer.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # decoders (SmolLM2): pad with EOS
        tokenizer.pad_token = tokenizer.eos_token

    def tokenize(batch):
        pairs = (batch["text_pair"],) if "text_pair" in batch else ()
        return tokenizer(batch["text"], *pairs, truncation=True, max_length=peer.max_seq_length)

    train_ds = task.train.map(tokenize, batched=True, remove_columns=["text", "text_pair"][: 1 + task.has_pair])
    eval_ds = task.eval.map(tokenize, batched=True, remove_columns=["text", "text_pair"][: 1 + task.has_pair])

    set_seed(args.seed)  # before the model: the fresh classifier head and LoRA weights follow --seed
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=task.num_labels, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=peer.lora_r, lora_alpha=peer.lora_alpha,
                      lora_dropout=peer.lora_dropout,  # target_modules: peft's default for the architecture (q, v)
                      modules_to_save=layers_before_classifier(model) or None)
    model = get_peft_model(model, lora)

    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                      compute_metrics=make_hf_compute_metrics(task.metric_kind))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    evals = [h for h in trainer.state.log_history if "eval_runtime" in h]  # evaluations inside train()
    train_seconds = seconds - sum(h["eval_runtime"] for h in evals)
    if not evals:
        evals = [trainer.evaluate()]
    metric = MAIN_METRIC[task.metric_kind]
    scores = [h[f"eval_{metric}"] for h in evals]
    greater = GREATER_IS_BETTER[task.metric_kind]
    return {
        "arm": "peer", "seed": args.seed, "metric": metric, "greater_is_better": greater,
        "best_metric": max(scores) if greater else min(scores), "final_metric": scores[-1],
        "train_seconds": train_seconds, "estimate_seconds": 0.0, "end_to_end_seconds": train_seconds,
        # rows the optimizer steps consumed, counted as the other arms count them (steps x batch)
        "train_throughput": trainer.state.global_step * args.per_device_train_batch_size
        * args.gradient_accumulation_steps * max(1, args.world_size) / train_seconds,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "target_modules": sorted(model.peft_config["default"].target_modules),
        "optimizer_steps": trainer.state.global_step, "train_rows": len(train_ds),
        "threads": torch.get_num_threads(), "load_after": os.getloadavg()[0],
    }


def main(argv: list[str]) -> int:
    parser = HfArgumentParser((PeerArguments, TrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        peer, args = parser.parse_json_file(argv[0])
    else:
        peer, args = parser.parse_args_into_dataclasses(argv)
    result = train_peer(peer, args)
    print(f"peer: best {result['metric']} {result['best_metric']:.4f}, {result['train_throughput']:.1f} "
          f"examples/s in training ({result['train_seconds']:.1f}s)")
    if peer.result_file:
        with open(peer.result_file, "w") as file:
            json.dump(result, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
