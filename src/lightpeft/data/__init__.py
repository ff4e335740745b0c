"""Tasks: turn `--task` into train/eval rows (`load_task`), tokenized features (`tokenize_task`) and a collator
(`make_collator`) for four kinds of task: sequence classification, regression, extractive QA and causal-LM
fine-tuning. Sources: `packaged` (Rotten Tomatoes), `glue`, `superglue`, `qa` (SQuAD), `lm` (prompt/response
records) and `tables` (CSV/TSV/JSON(L) text/label files, hub datasets); see `load_task` for what `--task` may be.
Prediction inputs: `read_texts` (unlabelled files), `encode_texts` (tokenized as training did), `qa_rows` +
`qa_windows` (questions to answer), `encode_prompts` (prompts to continue).
"""

from lightpeft.data.api import PAD_MULTIPLE, check_labels_fit, load_task, make_collator, tokenize_task
from lightpeft.data.classify import encode_texts
from lightpeft.data.glue import GLUE_FORMATS
from lightpeft.data.lm import IGNORE_INDEX, CausalLMCollator, encode_prompts
from lightpeft.data.qa import QA_EVAL_COLUMNS, make_qa_compute_metrics, postprocess_qa, qa_rows, qa_windows
from lightpeft.data.superglue import SUPERGLUE_FORMATS
from lightpeft.data.tables import read_texts
from lightpeft.data.task import METRIC_KINDS_OF_TASK, TASK_KINDS, TaskData

__all__ = [
    "GLUE_FORMATS",
    "IGNORE_INDEX",
    "METRIC_KINDS_OF_TASK",
    "PAD_MULTIPLE",
    "QA_EVAL_COLUMNS",
    "SUPERGLUE_FORMATS",
    "TASK_KINDS",
    "CausalLMCollator",
    "TaskData",
    "check_labels_fit",
    "encode_prompts",
    "encode_texts",
    "load_task",
    "make_collator",
    "make_qa_compute_metrics",
    "postprocess_qa",
    "qa_rows",
    "qa_windows",
    "read_texts",
    "tokenize_task",
]
