"""The model side of each task kind: which Hugging Face class a base checkpoint becomes, which head trains with the
PEFT modules, and which peft task type wraps it.

| task kind (`TaskData.kind`) | class | trained head | peft task type |
|---|---|---|---|
| classification, regression | AutoModelForSequenceClassification | `classifier` / `score` | SEQ_CLS |
| qa | AutoModelForQuestionAnswering | `qa_outputs` (start/end logits) | none, `modules_to_save=["qa_outputs"]` |
| causal_lm | AutoModelForCausalLM (decoders only) | none: `lm_head` stays frozen | CAUSAL_LM |

Why no QUESTION_ANS for QA: peft 0.21's `PeftModelForQuestionAnswering.forward` takes `token_type_ids` as a named
argument and never passes it on, so BERT would see every context token as segment 0 (checked in
tests/test_task_heads.py). The plain `PeftModel` passes every input through; `modules_to_save` is what QUESTION_ANS
would have set.
"""

from __future__ import annotations

import torch
from peft import TaskType
from torch import nn
from transformers import (
    MODEL_FOR_CAUSAL_LM_MAPPING,
    MODEL_FOR_QUESTION_ANSWERING_MAPPING,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    MODEL_MAPPING,
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
)

from lightpeft.core import arch
from lightpeft.errors import LightPeftError

TASK_MODEL_CLASSES = {
    "classification": AutoModelForSequenceClassification,
    "regression": AutoModelForSequenceClassification,
    "qa": AutoModelForQuestionAnswering,
    "causal_lm": AutoModelForCausalLM,
}
# config class -> model class, as the Auto classes above resolve it (transformers' public mappings, the ones
# `from_config` / `from_pretrained` consult)
TASK_MODEL_MAPPINGS = {
    "classification": MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    "regression": MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    "qa": MODEL_FOR_QUESTION_ANSWERING_MAPPING,
    "causal_lm": MODEL_FOR_CAUSAL_LM_MAPPING,
}
# Trainable task heads, by attribute name: peft's SEQ_CLS `modules_to_save` and the QA span head. `lm_head` is not
# one: a causal LM trains PEFT modules only (its lm_head is often the input embedding matrix, tied).
HEAD_NAMES = ("classifier", "score", "qa_outputs")
QA_HEAD = "qa_outputs"
# Layers a sequence classifier puts between the backbone and its classifier: DistilBERT's `pre_classifier`,
# DeBERTa's `pooler` (ContextPooler) and ModernBERT's `head` (the task class adds them, randomly initialised), and
# BERT's backbone `pooler`, which only the classifier reads. They train with the head. Why: peft's SEQ_CLS trains
# `classifier`/`score` only, which leaves the first three frozen at their random init and BERT's pooler frozen at
# whatever the checkpoint holds; all-MiniLM-L6-v2's was never trained (the sentence embedder mean-pools), and with it
# frozen LoRA q,v on CoLA stayed at MCC 0. RoBERTa's and ELECTRA's classification heads hold their dense layer
# inside `classifier`, so they train it already.
PRE_HEAD_NAMES = ("pre_classifier", "pooler", "head")
BACKBONE_POOLER = "pooler"
DECODER_TYPES = tuple(sorted(t for t, spec in arch.ARCHITECTURES.items() if not spec.encoder))


def kind_of(task: dict) -> str:
    """The task kind recorded in a run's or export's `task` (runs from before the kinds: from `regression`)."""
    return task.get("kind") or ("regression" if task.get("regression") else "classification")


def check_kind(config, kind: str) -> None:
    """A clear one-line error when the architecture of `config` cannot do `kind` (before any weights load)."""
    if kind not in TASK_MODEL_CLASSES:
        raise LightPeftError(f"unknown task kind {kind!r}; use one of {', '.join(TASK_MODEL_CLASSES)}")
    spec = arch.get_arch(config)
    if kind == "causal_lm" and spec.encoder:
        raise LightPeftError(f"model type {config.model_type!r} is an encoder and cannot be fine-tuned as a causal LM "
                             f"(prompt/response data); use a decoder ({', '.join(DECODER_TYPES)})")
    if type(config) not in TASK_MODEL_MAPPINGS[kind]:
        raise LightPeftError(f"transformers has no {TASK_MODEL_CLASSES[kind].__name__[9:]} class for model type "
                             f"{config.model_type!r}, so it cannot do {kind} tasks; use another base checkpoint")


def model_class(config, kind: str):
    """The concrete HF class for `kind` on `config`'s architecture (checked with `check_kind`)."""
    check_kind(config, kind)
    return TASK_MODEL_MAPPINGS[kind][type(config)]


def checkpoint_key_mapping(config, kind: str) -> dict[str, str] | None:
    """Rename the backbone's weights when the task class keeps it under another attribute than the checkpoint.

    transformers 5.23's `LlamaForQuestionAnswering` (and Qwen2/Qwen3/Mistral's) keep the backbone as `transformer`
    "for BC", while causal-LM and classifier checkpoints store `model.*`; without the mapping every backbone weight
    would load as missing and be initialised at random.
    """
    task_prefix = model_class(config, kind).base_model_prefix
    backbone_prefix = MODEL_MAPPING[type(config)].base_model_prefix
    if task_prefix == backbone_prefix:
        return None
    return {rf"^{backbone_prefix}\.": f"{task_prefix}."}


def meta_task_model(config, kind: str) -> nn.Module:
    """A weightless (meta-device) task model of `kind` for counting parameters and FLOPs."""
    with torch.device("meta"):
        return model_class(config, kind)(config)


def peft_task_type(model: nn.Module) -> TaskType | None:
    """The peft task type for an HF task model (see the module docstring; None for QA)."""
    if hasattr(model, QA_HEAD):
        return None
    if is_causal_lm(model):
        return TaskType.CAUSAL_LM
    return TaskType.SEQ_CLS


def modules_to_save(model: nn.Module) -> list[str] | None:
    """Heads peft must train and save beside LoRA that its task type does not add itself: QA's span head, a
    classifier's layers between backbone and classifier (`pre_head_modules`, by their full names)."""
    if hasattr(model, QA_HEAD):
        return [QA_HEAD]
    return list(pre_head_modules(model)) or None


def pre_head_modules(model: nn.Module) -> dict[str, nn.Module]:
    """A sequence classifier's layers between its backbone and its classifier (`PRE_HEAD_NAMES`), by name relative
    to the HF model; empty for QA, causal LMs and classifiers without any (RoBERTa, the decoders' `score`)."""
    if kind_of_model(model) != "classification" or not any(hasattr(model, h) for h in ("classifier", "score")):
        return {}
    found = {name: module for name, module in model.named_children()
             if name in PRE_HEAD_NAMES and any(True for _ in module.parameters())}
    prefix = getattr(model, "base_model_prefix", "")
    backbone = getattr(model, prefix, None) if prefix else None
    pooler = getattr(backbone, BACKBONE_POOLER, None) if isinstance(backbone, nn.Module) else None
    if isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters()):
        found[f"{prefix}.{BACKBONE_POOLER}"] = pooler
    return found


def is_causal_lm(model: nn.Module) -> bool:
    """A language-model head that generates (OPTForCausalLM, GPT2LMHeadModel, LlamaForCausalLM, ...)."""
    return model.can_generate() if hasattr(model, "can_generate") else False


def head_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The trainable task head(s) of an HF model: outermost modules named like `HEAD_NAMES`, and the layers before
    a classifier (`pre_head_modules`)."""
    heads = {}
    for name, module in model.named_modules():
        if name.rpartition(".")[2] in HEAD_NAMES and not any(name.startswith(h + ".") for h in heads):
            heads[name] = module
    return {**pre_head_modules(model), **heads}


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """`classifier.`, `score.`, ...: the state-dict prefixes of the model's task heads."""
    return tuple(name + "." for name in head_modules(model))


@torch.no_grad()
def init_regression_bias(model: nn.Module, mean_label: float) -> bool:
    """Start a regression head at the mean training score: set the bias of its 1-wide output linear to `mean_label`.

    Why: a fresh head predicts about 0 while STS-B scores average ~2.7, so with a short run the first updates go
    into the offset and the model ends near "always predict the mean" (Pearson ~0 after 2 epochs of 1,000 rows).
    Heads without a bias (the decoders' `score`) are left alone. Returns whether a bias was set.
    """
    for head in head_modules(model).values():
        linears = [m for m in head.modules() if isinstance(m, nn.Linear) and m.out_features == 1]
        if linears and linears[-1].bias is not None:
            linears[-1].bias.fill_(float(mean_label))
            return True
    return False


def kind_of_model(model: nn.Module) -> str:
    """The task kind an HF task model was built for (`classification` stands for regression too)."""
    if hasattr(model, QA_HEAD):
        return "qa"
    return "causal_lm" if is_causal_lm(model) else "classification"
