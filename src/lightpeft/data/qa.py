"""Extractive QA on SQuAD-format JSON: loading, windowed tokenization for start/end heads, answer postprocessing.

File layout (SQuAD v1.1 / v2.0): `{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}`. Rows come out in the Hugging Face `squad` layout:
`id`, `title`, `context`, `question`, `answers = {"text": [...], "answer_start": [...]}`.

Tokenization is the usual recipe for encoders: question + context as a pair, only the context truncated, long
contexts cut into windows (`max_seq_length` tokens, consecutive windows sharing `doc_stride` tokens), and the
offset mapping used to turn the answer's characters into start/end token positions. A window that does not hold
the whole answer points both positions at token 0 (the [CLS] token of encoders), as unanswerable questions do.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import datasets
import numpy as np

from lightpeft.config import DataConfig
from lightpeft.data.classify import pair_separator
from lightpeft.data.readers import read_json
from lightpeft.data.task import TaskData, grouped_split_indices
from lightpeft.errors import LightPeftError
from lightpeft.metrics import compute_metrics

logger = logging.getLogger(__name__)

QA_FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "title": datasets.Value("string"),
    "context": datasets.Value("string"),
    "question": datasets.Value("string"),
    "answers": {"text": datasets.Sequence(datasets.Value("string")),
                "answer_start": datasets.Sequence(datasets.Value("int32"))},
})
# Columns of eval features that map predictions back to text; not model inputs (the collator drops them).
QA_EVAL_COLUMNS = ("example_id", "offset_mapping")
NO_ANSWER_POSITION = 0  # the first token ([CLS] for encoders): where windows without the answer point


def is_squad_content(content) -> bool:
    """Whether parsed JSON has the SQuAD layout (`data` -> articles with `paragraphs`)."""
    articles = content.get("data") if isinstance(content, dict) else None
    return isinstance(articles, list) and bool(articles) and all(
        isinstance(article, dict) and "paragraphs" in article for article in articles
    )


def squad_files_in(directory: Path) -> tuple[Path | None, Path | None]:
    """`train*.json` and `dev*.json` / `val*.json` of a SQuAD directory (either may be missing)."""
    def first(patterns: tuple[str, ...]) -> Path | None:
        return next((path for pattern in patterns for path in sorted(directory.glob(pattern))), None)

    return first(("train*.json",)), first(("dev*.json", "val*.json"))


def load_squad(train_path: Path | None, eval_path: Path | None, cfg: DataConfig, name: str) -> TaskData:
    """A `qa` task from SQuAD files; with only one file, whole articles are split off for eval (seeded).

    Raises:
        LightPeftError: for a file that is not SQuAD-shaped, an answer that is not found at its `answer_start`,
            duplicate question ids, or too few articles/paragraphs to split.
    """
    train_rows = squad_rows(train_path) if train_path is not None else None
    eval_rows = squad_rows(eval_path) if eval_path is not None else None
    if train_rows is None or eval_rows is None:
        present = train_path or eval_path
        logger.warning("%s alone: splitting whole articles into train/eval with --validation_fraction %s and "
                       "--split_seed %s", present, cfg.validation_fraction, cfg.split_seed)
        train_rows, eval_rows = _split_by_article(train_rows or eval_rows, cfg, present)
    return TaskData(
        name=name,
        train=datasets.Dataset.from_list(train_rows, features=QA_FEATURES),
        eval=datasets.Dataset.from_list(eval_rows, features=QA_FEATURES),
        num_labels=None,
        label_names=None,
        metric_kind="squad",
        kind="qa",
    )


def squad_rows(path: Path, content=None) -> list[dict]:
    """Flatten a SQuAD file into one row per question, checking every answer against its context."""
    content = read_json(path) if content is None else content
    if not is_squad_content(content):
        raise LightPeftError(f"{path} is not a SQuAD-format file (expected data -> paragraphs -> qas); fix the file")
    rows = []
    try:
        for article in content["data"]:
            for paragraph in article["paragraphs"]:
                rows.extend(_paragraph_rows(article.get("title", ""), paragraph))
    except (KeyError, TypeError) as exc:
        raise LightPeftError(f"{path} has a malformed SQuAD record ({type(exc).__name__}: {exc}); every paragraph "
                             "needs context and qas, every question id, question and answers") from None
    _check_rows(rows, path)
    return rows


def _paragraph_rows(title: str, paragraph: dict) -> list[dict]:
    context = paragraph["context"]
    return [
        {
            "id": str(qa["id"]),
            "title": title,
            "context": context,
            "question": qa["question"].strip(),  # some SQuAD questions carry long leading whitespace
            "answers": {"text": [a["text"] for a in qa["answers"]],
                        "answer_start": [int(a["answer_start"]) for a in qa["answers"]]},
        }
        for qa in paragraph["qas"]
    ]


def _check_rows(rows: list[dict], path: Path) -> None:
    if not rows:
        raise LightPeftError(f"{path} holds no questions; pass a SQuAD file with at least one question")
    ids = [row["id"] for row in rows]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise LightPeftError(f"question id {duplicate!r} occurs more than once in {path}; ids must be unique")
    for row in rows:
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True):
            if not text or row["context"][start:start + len(text)] != text:
                raise LightPeftError(
                    f"answer {text!r} of question {row['id']!r} in {path} is not found at answer_start {start} of "
                    "its context; fix answer_start (character offset into the context)"
                )


def _split_by_article(rows: list[dict], cfg: DataConfig, source: Path) -> tuple[list[dict], list[dict]]:
    """Seeded split by article (or by paragraph when there is one article), so no context is on both sides."""
    groups = np.array([row["title"] for row in rows], dtype=object)
    if len(set(groups.tolist())) < 2:
        groups = np.array([row["context"] for row in rows], dtype=object)
    if len(set(groups.tolist())) < 2:
        raise LightPeftError(f"{source} has a single paragraph, too few to split off an eval set; pass "
                             "--validation_file")
    train_index, eval_index = grouped_split_indices(groups, cfg.validation_fraction, cfg.split_seed)
    return [rows[i] for i in train_index], [rows[i] for i in eval_index]


# ----------------------------------------------------------------------------------------------------------------
# Tokenization


def tokenize_qa(
    task: TaskData, tokenizer, max_seq_length: int, doc_stride: int | None = None
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Question/context windows with answer positions (train) and the offsets to read answers back (eval).

    Args:
        task: a `qa` task.
        tokenizer: a fast tokenizer (offset mappings are needed).
        max_seq_length: tokens per window, question and special tokens included.
        doc_stride: tokens shared by consecutive windows of one context (default `max_seq_length // 4`).

    Returns:
        `(train, eval)` features, one row per window: `input_ids`, `attention_mask`, `token_type_ids` (if made),
        `start_positions`, `end_positions`; eval rows also have `example_id` and `offset_mapping` (character span
        of each context token in the context, `None` for question and special tokens), which `postprocess_qa`
        reads and `make_collator` drops.
    """
    return (qa_windows(task.train, tokenizer, max_seq_length, doc_stride, keep_offsets=False, name="train"),
            qa_windows(task.eval, tokenizer, max_seq_length, doc_stride, keep_offsets=True, name="eval"))


def qa_windows(rows: datasets.Dataset, tokenizer, max_seq_length: int, doc_stride: int | None = None,
               keep_offsets: bool = True, name: str = "eval") -> datasets.Dataset:
    """The windows of `tokenize_qa` for one split of QA rows (`id`, `context`, `question`, `answers`; answers may be
    empty, e.g. questions to predict); `keep_offsets` adds `example_id` and `offset_mapping` for `postprocess_qa`."""
    if not getattr(tokenizer, "is_fast", False):
        raise LightPeftError("extractive QA needs a fast tokenizer (offset mappings); load it with use_fast=True")
    stride = max_seq_length // 4 if doc_stride is None else doc_stride
    max_question_tokens = _max_question_tokens(tokenizer, max_seq_length, stride)
    separator = pair_separator(tokenizer)

    def encode(batch: dict, keep_offsets: bool) -> dict:
        questions = [_trim(question, tokenizer, max_question_tokens) + separator for question in batch["question"]]
        encoded = tokenizer(questions, batch["context"], truncation="only_second", max_length=max_seq_length,
                            stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
        example_of_window = encoded.pop("overflow_to_sample_mapping")
        offsets = encoded.pop("offset_mapping")
        starts, ends, context_offsets = [], [], []
        for window, example in enumerate(example_of_window):
            in_context = [sequence == 1 for sequence in encoded.sequence_ids(window)]
            context = batch["context"][example]
            spans = [_without_leading_space(context, span) if inside else None
                     for span, inside in zip(offsets[window], in_context, strict=True)]
            start, end = answer_token_span(spans, in_context, batch["answers"][example])
            starts.append(start)
            ends.append(end)
            context_offsets.append(spans)
        features = {**encoded, "start_positions": starts, "end_positions": ends}
        if keep_offsets:
            features["example_id"] = [batch["id"][example] for example in example_of_window]
            features["offset_mapping"] = context_offsets
        return dict(features)

    return rows.map(encode, batched=True, remove_columns=rows.column_names, fn_kwargs={"keep_offsets": keep_offsets},
                    desc=f"tokenizing {name} (QA windows)")


def _without_leading_space(context: str, span: tuple[int, int]) -> tuple[int, int]:
    """Byte-level BPE tokens (GPT-2, Llama 3, SmolLM2) carry the space before a word; a span starts at the word."""
    start, end = span
    while start < end - 1 and context[start].isspace():
        start += 1
    return start, end


def qa_rows(questions: list[str], contexts: list[str]) -> datasets.Dataset:
    """Unanswered QA rows (ids "0", "1", ...) for prediction, in the layout `qa_windows` reads."""
    return datasets.Dataset.from_list(
        [{"id": str(i), "title": "", "context": context, "question": question.strip(),
          "answers": {"text": [], "answer_start": []}} for i, (question, context) in enumerate(zip(questions, contexts,
                                                                                               strict=True))],
        features=QA_FEATURES)


def answer_token_span(offsets: list, in_context: list[bool], answers: dict) -> tuple[int, int]:
    """Token positions of the first answer's first and last token, or `(0, 0)` if this window does not hold it all.

    Args:
        offsets: `(char_start, char_end)` of each token in its own text (anything for tokens outside the context).
        in_context: whether each token belongs to the context.
        answers: `{"text": [...], "answer_start": [...]}`; an empty list means unanswerable.
    """
    if not answers["text"]:
        return NO_ANSWER_POSITION, NO_ANSWER_POSITION
    first_char = answers["answer_start"][0]
    end_char = first_char + len(answers["text"][0])  # exclusive
    context_tokens = [i for i, inside in enumerate(in_context) if inside]
    if not context_tokens or offsets[context_tokens[0]][0] > first_char or offsets[context_tokens[-1]][1] < end_char:
        return NO_ANSWER_POSITION, NO_ANSWER_POSITION
    start = next(i for i in reversed(context_tokens) if offsets[i][0] <= first_char)
    end = next(i for i in context_tokens if offsets[i][1] >= end_char)
    return start, end


def _max_question_tokens(tokenizer, max_seq_length: int, stride: int) -> int:
    """Longest question that still leaves a context window of more than `stride` tokens (the tokenizer needs it);
    one more token is kept spare for the newline that separates question and context for decoder tokenizers."""
    limit = max_seq_length - tokenizer.num_special_tokens_to_add(pair=True) - stride - 2
    if stride <= 0 or limit < 1:
        raise LightPeftError(
            f"--doc_stride {stride} leaves no room for the question in --max_seq_length {max_seq_length}; pass "
            f"--doc_stride of at most {max(1, max_seq_length // 4)} or a larger --max_seq_length"
        )
    return limit


def _trim(question: str, tokenizer, max_tokens: int) -> str:
    """Cut a question after its `max_tokens`-th token (at that token's end in the text)."""
    encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(encoded["input_ids"]) <= max_tokens:
        return question
    return question[: encoded["offset_mapping"][max_tokens - 1][1]]


# ----------------------------------------------------------------------------------------------------------------
# Predictions -> answer text -> SQuAD metrics


def postprocess_qa(
    examples: datasets.Dataset, features: datasets.Dataset, start_logits: np.ndarray, end_logits: np.ndarray,
    n_best: int = 20, max_answer_length: int = 30, allow_no_answer: bool = False,
) -> dict[str, str]:
    """Turn start/end logits of every window into one answer text per question.

    For each question, the `n_best` highest start and end logits of each of its windows are paired; a pair counts
    if both tokens are context tokens, end >= start and it spans at most `max_answer_length` tokens. The pair with
    the highest start + end logit wins and its text is cut from the context by the offsets.

    Args:
        examples: the task's eval rows (`id`, `context`, ...).
        features: the eval features of `tokenize_qa` (with `example_id`, `offset_mapping`), in the order of the
            logits.
        start_logits: `(num_windows, T)`; `T` may exceed a window's length (batch padding), extra columns are ignored.
        end_logits: `(num_windows, T)`.
        n_best: candidates per side and window.
        max_answer_length: longest answer in tokens.
        allow_no_answer: SQuAD v2: answer `""` when the no-answer score (token 0) beats the best span.

    Returns:
        `{question id: answer text}` (`""` when no window gives a valid span).
    """
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    if start_logits.ndim != 2 or start_logits.shape != end_logits.shape or len(start_logits) != len(features):
        raise LightPeftError(
            f"QA logits must both be (num_windows={len(features)}, T), got {start_logits.shape} and "
            f"{end_logits.shape}; pass the eval features in the order they were predicted"
        )
    columns = features.select_columns(list(QA_EVAL_COLUMNS)).to_dict()  # plain lists: fast row access
    windows_of = defaultdict(list)
    for window, example_id in enumerate(columns["example_id"]):
        windows_of[example_id].append(window)
    all_offsets = columns["offset_mapping"]
    predictions = {}
    for example_id, context in zip(list(examples["id"]), list(examples["context"]), strict=True):
        best_score, best_text, no_answer_score = -np.inf, "", np.inf
        for window in windows_of[example_id]:
            offsets = all_offsets[window][: start_logits.shape[1]]
            starts, ends = start_logits[window, : len(offsets)], end_logits[window, : len(offsets)]
            no_answer_score = min(no_answer_score, starts[NO_ANSWER_POSITION] + ends[NO_ANSWER_POSITION])
            for start in np.argsort(starts)[::-1][:n_best]:
                for end in np.argsort(ends)[::-1][:n_best]:
                    if offsets[start] is None or offsets[end] is None or not 0 <= end - start < max_answer_length:
                        continue
                    if starts[start] + ends[end] > best_score:
                        best_score = starts[start] + ends[end]
                        best_text = context[offsets[start][0]: offsets[end][1]]
        predictions[example_id] = "" if allow_no_answer and no_answer_score > best_score else best_text
    return predictions


def make_qa_compute_metrics(examples: datasets.Dataset, features: datasets.Dataset, n_best: int = 20,
                            max_answer_length: int = 30):
    """A `compute_metrics` for `transformers.Trainer` on a QA eval set: logits -> answers -> SQuAD EM / F1.

    Args:
        examples: the task's eval rows.
        features: the eval features of `tokenize_qa`, given to the Trainer as `eval_dataset` in this order.
        n_best: see `postprocess_qa`.
        max_answer_length: see `postprocess_qa`.

    Returns:
        A function of an `EvalPrediction` whose `predictions` are `(start_logits, end_logits)`; it returns
        `{"exact_match": ..., "f1": ...}` as fractions. No-answer predictions are allowed when the eval set has
        unanswerable questions (SQuAD v2).
    """
    gold = [answers["text"] for answers in list(examples["answers"])]
    example_ids = list(examples["id"])
    allow_no_answer = any(not texts for texts in gold)

    def qa_compute_metrics(eval_prediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        if not isinstance(predictions, (tuple, list)) or len(predictions) < 2:
            raise LightPeftError("QA predictions must be (start_logits, end_logits); evaluate a question-answering "
                                 "model (AutoModelForQuestionAnswering)")
        answers = postprocess_qa(examples, features, predictions[0], predictions[1], n_best, max_answer_length,
                                 allow_no_answer)
        return compute_metrics("squad", [answers[i] for i in example_ids], gold)

    return qa_compute_metrics
