"""Partitions of the search space and which criteria score each: 4 depth blocks by relative depth, crossed with the
module group (`lora`, `adapter`, ...); or 1 block over all depths (`--depth_blocks 1`, the no-partition ablation).

Blocks are fixed once, by the relative depth l / (L - 1) of a layer: < 0.2, < 0.5, < 0.8, the rest (24 layers:
0-4, 5-11, 12-18, 19-23, the released code's first-round split). The released code recomputed them every round from
the highest remaining layer, so they moved as modules went; here they do not.

An assignment (partition -> criteria) comes from the warm-up's pruning counts (`assign_by_frequency`: the union
rule), from the released code's fixed table (`paper_assignment`), from every criterion for every partition
(`uniform_assignment`), or from a file a previous search wrote (`load_assignment`, reusable on another task of the
same base model).
"""

from __future__ import annotations

import json
from pathlib import Path

from lightpeft.errors import LightPeftError
from lightpeft.io import write_json
from lightpeft.methods.prune_peft.criteria import check_criteria

BLOCK_EDGES = (0.2, 0.5, 0.8)
NUM_BLOCKS = len(BLOCK_EDGES) + 1
# relative-depth edges by number of blocks: the paper's 4, or 1 (every depth in one block)
EDGES = {NUM_BLOCKS: BLOCK_EDGES, 1: ()}
DEPTH_BLOCKS = tuple(EDGES)
ASSIGNMENT_SCHEMA_VERSION = 1
ASSIGNMENT_FILE = "assignment.json"

# The released code's fixed table (its warm-up is switched off), by block; adapter rows for every adapter group.
PAPER_TABLE = {
    "lora": [["activation", "threshold"], ["threshold"], ["zeros"], ["gradient"]],
    "adapter": [["activation", "weight", "sensitivity", "zeros"], ["sensitivity", "weight"],
                ["weight", "sensitivity"], ["sensitivity"]],
}


def block_of(layer: int, num_layers: int, num_blocks: int = NUM_BLOCKS) -> int:
    depth = layer / max(num_layers - 1, 1)
    edges = EDGES[num_blocks]
    return next((b for b, edge in enumerate(edges) if depth < edge), len(edges))


def blocks(num_layers: int, num_blocks: int = NUM_BLOCKS) -> list[list[int]]:
    """The layers of each block (a block may be empty on a shallow model)."""
    return [[layer for layer in range(num_layers) if block_of(layer, num_layers, num_blocks) == b]
            for b in range(num_blocks)]


def partition_of(candidate: str, num_layers: int, num_blocks: int = NUM_BLOCKS) -> str:
    """`lora/7` -> `lora/block1` (for 24 layers and 4 blocks)."""
    group, layer = candidate.split("/")
    return f"{group}/block{block_of(int(layer), num_layers, num_blocks)}"


def partitions_of(candidates: list[str], num_layers: int, num_blocks: int = NUM_BLOCKS) -> list[str]:
    """The partitions holding at least one of `candidates`, in first-seen order."""
    return list(dict.fromkeys(partition_of(c, num_layers, num_blocks) for c in candidates))


def uniform_assignment(partitions: list[str], criteria: list[str]) -> dict[str, list[str]]:
    return {p: list(criteria) for p in partitions}


def paper_assignment(partitions: list[str]) -> dict[str, list[str]]:
    return {p: list(PAPER_TABLE["lora" if p.startswith("lora/") else "adapter"][int(p.rsplit("block", 1)[1])])
            for p in partitions}


def assign_by_frequency(counts: dict[str, dict[str, int]], partitions: list[str]) -> dict[str, list[str]]:
    """The warm-up's union rule on `counts` (criterion -> partition -> modules it pruned there).

    A partition gets (a) the criteria that pruned most often in it (ties kept), and (b) every criterion whose most
    pruned partition (ties kept) it is. A partition no criterion pruned in gets all of them under (a): every count
    ties at zero. Criteria keep the order of `counts`.
    """
    criteria = list(counts)
    chosen = {p: set() for p in partitions}
    for p in partitions:
        top = max(counts[c].get(p, 0) for c in criteria)
        chosen[p].update(c for c in criteria if counts[c].get(p, 0) == top)
    for c in criteria:
        top = max((counts[c].get(p, 0) for p in partitions), default=0)
        if top > 0:
            for p in partitions:
                if counts[c].get(p, 0) == top:
                    chosen[p].add(c)
    return {p: [c for c in criteria if c in chosen[p]] for p in partitions}


def save_assignment(path: Path, assignment: dict[str, list[str]], source: str, base_fingerprint: str,
                    model_type: str, num_layers: int, counts: dict | None = None, num_blocks: int = NUM_BLOCKS) -> None:
    write_json(path, {"schema_version": ASSIGNMENT_SCHEMA_VERSION, "source": source,
                      "base_fingerprint": base_fingerprint, "model_type": model_type, "num_layers": num_layers,
                      "blocks": blocks(num_layers, num_blocks), "partitions": assignment, "warmup_counts": counts})


def load_assignment(path: str | Path, partitions: list[str], base_fingerprint: str, num_layers: int,
                    num_blocks: int = NUM_BLOCKS) -> dict[str, list[str]]:
    """The assignment in `path` (a file or a search directory), checked against this search's base, blocks and
    partitions."""
    path = Path(path)
    if path.is_dir():
        path = path / ASSIGNMENT_FILE
    fix = "pass an assignment.json that `lightpeft search` wrote for this base model"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LightPeftError(f"assignment file {path} does not exist; {fix}") from None
    except (OSError, ValueError, UnicodeDecodeError):
        raise LightPeftError(f"assignment file {path} is not valid JSON; {fix}") from None
    if not isinstance(data, dict) or data.get("schema_version") != ASSIGNMENT_SCHEMA_VERSION:
        raise LightPeftError(f"assignment file {path} is not a version-{ASSIGNMENT_SCHEMA_VERSION} assignment; {fix}")
    if data.get("base_fingerprint") != base_fingerprint or data.get("num_layers") != num_layers:
        raise LightPeftError(f"assignment file {path} was made for another base model (fingerprint "
                             f"{data.get('base_fingerprint')}, {data.get('num_layers')} layers; this one: "
                             f"{base_fingerprint}, {num_layers} layers); {fix}")
    made_with = data.get("blocks")
    if made_with != blocks(num_layers, num_blocks):
        # the same partition names mean other layers under another block count: block0 of 4 is not block0 of 1
        count = len(made_with) if isinstance(made_with, list) else "unknown"
        raise LightPeftError(f"assignment file {path} was made with {count} depth blocks, this search uses "
                             f"{num_blocks}; search with the --depth_blocks it was made with")
    table = data.get("partitions")
    if not isinstance(table, dict) or not all(isinstance(v, list) and v for v in table.values()):
        raise LightPeftError(f"assignment file {path} has no partitions -> criteria table; {fix}")
    missing = [p for p in partitions if p not in table]
    if missing:
        raise LightPeftError(f"assignment file {path} has no criteria for partition {missing[0]} of this search "
                             "space; search with the --lora_roles / --adapter_roles it was made with")
    for p in partitions:
        check_criteria(table[p], f"assignment file {path}, partition {p}")
    return {p: list(table[p]) for p in partitions}
