"""The export's model card: README.md with Hugging Face's YAML header, saying what the model is, how well it does,
how to load it and which commands made it."""

from __future__ import annotations

from pathlib import Path

import yaml

from lightpeft.core.plan import Plan
from lightpeft.provenance import command_line
from lightpeft.report import markdown_table

PIPELINE_TAGS = {"classification": "text-classification", "regression": "text-classification",
                 "qa": "question-answering", "causal_lm": "text-generation"}
CARD_FILE = "README.md"


def write_model_card(directory: Path, record: dict, summary: dict, plan: Plan) -> None:
    """README.md in an export `directory` from its export.json `record`, the run's summary and plan."""
    (directory / CARD_FILE).write_text(model_card(record, summary, plan, command_line()))


def model_card(record: dict, summary: dict, plan: Plan, export_command: str) -> str:
    task = record["task"]
    standard = record["format"] == "transformers"
    header = {
        "library_name": "transformers" if standard else "lightpeft",
        "base_model": _base_name(record["base_path"]),
        "pipeline_tag": PIPELINE_TAGS.get(task["kind"], "text-classification"),
        "tags": ["lightpeft", "light-peft", "pruned", *plan.kinds],
        "metrics": [summary.get("metric")],
    }
    metric = summary.get("metric")
    rows = [
        ["base", f"`{record['base_path']}` (fingerprint `{record['base_fingerprint']}`)"],
        ["method", f"{plan.method}, PEFT {plan.peft}" + (" merged into the weights" if record["merged"] else "")],
        ["task", f"{task.get('name')} ({task['kind']}" + _labels(task) + ")"],
        [f"dev {metric}", f"final {_num(summary.get('final_metric'))}, best {_num(summary.get('best_metric'))}"],
        ["layers", plan.num_layers],
        ["attention heads per layer", _per_layer([len(h) for h in plan.heads], plan.num_heads)],
        ["FFN width per layer", _per_layer([len(f) for f in plan.ffn], plan.ffn_size)],
    ]
    if plan.kv_head_count != plan.num_heads:  # grouped-query attention
        rows.insert(-1, ["key/value heads per layer", _per_layer([len(plan.kept_kv_heads(i))
                                                                  for i in range(plan.num_layers)], plan.kv_head_count)])
    ratios = plan.ratios or {}
    if "head_ratio" in ratios:
        rows.append(["plan settings", f"head ratio {ratios['head_ratio']:g}, FFN ratio {ratios['ffn_ratio']:g}, "
                     f"module ratio {ratios['module_ratio']:g}, rank ratio {ratios['rank_ratio']:g}"
                     + (", uniform" if ratios.get("uniform") else "")])
    counts = plan.counts or summary.get("plan_counts") or {}
    if counts.get("foundation_params_after"):
        rows.append(["foundation parameters", f"{counts['foundation_params_after']:,} of "
                     f"{counts['foundation_params_before']:,} ({counts['foundation_pruned_fraction']:.1%} pruned)"])
    made_by = "\n".join(c for c in (summary.get("command"), export_command) if c)
    return (f"---\n{yaml.safe_dump(header, sort_keys=False)}---\n\n"
            f"# {task.get('name')}: a pruned {plan.model_type} fine-tuned with Light-PEFT\n\n"
            f"{markdown_table(['', ''], rows)}\n\n## How to load\n\n{_loading(record, task['kind'], standard)}\n\n"
            f"## How it was made\n\n```bash\n{made_by}\n```\n")


def _loading(record: dict, kind: str, standard: bool) -> str:
    if standard:
        auto = record["loader"].split(".")[1]
        return ("A standard checkpoint: the config holds the pruned head and FFN counts, the weights have the "
                "standard names and LoRA is merged, so any runtime that reads this family loads it.\n\n"
                f"```python\nfrom transformers import AutoTokenizer, {auto}\n\n"
                f"model = {auto}.from_pretrained(\"PATH\")\ntokenizer = AutoTokenizer.from_pretrained(\"PATH\")\n```")
    return (f"Not a standard checkpoint ({record.get('not_standard_because')}): the per-layer shapes are in "
            "plan.json, which `config.json` cannot express. Load it with lightpeft:\n\n"
            "```python\nimport lightpeft\n\nmodel = lightpeft.load_exported(\"PATH\")\n```\n\n"
            "A plan made with `--uniform true` exports a standard checkpoint instead.")


def _base_name(path: str) -> str:
    """The checkpoint's directory name (a packaged checkpoint's generic `model` folder: its package's name)."""
    path = Path(path)
    return path.parent.name if path.name == "model" and path.parent.name else path.name


def _per_layer(counts: list[int], full: int) -> str:
    low, high = min(counts), max(counts)
    return f"{low} of {full}" if low == high else f"{low} to {high} of {full} (differs by layer)"


def _labels(task: dict) -> str:
    names = task.get("label_names")
    return f"; labels {', '.join(map(str, names))}" if names else ""


def _num(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"
