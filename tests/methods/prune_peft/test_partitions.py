"""Depth blocks, the warm-up's union rule on fake counts, the released code's table, and assignment files."""

import json

import pytest

from lightpeft.errors import LightPeftError
from lightpeft.methods.prune_peft.partitions import (
    assign_by_frequency,
    blocks,
    load_assignment,
    paper_assignment,
    partition_of,
    partitions_of,
    save_assignment,
)


def test_blocks_follow_relative_depth_and_match_the_papers_24_layer_split():
    assert blocks(24) == [list(range(0, 5)), list(range(5, 12)), list(range(12, 19)), list(range(19, 24))]
    assert blocks(6) == [[0], [1, 2], [3], [4, 5]]
    assert blocks(2) == [[0], [], [], [1]]
    assert partition_of("adapter_o/13", 24) == "adapter_o/block2"
    assert partitions_of(["lora/0", "adapter/0", "lora/5", "adapter/1"], 6) == ["lora/block0", "adapter/block0",
                                                                                 "lora/block3", "adapter/block1"]


def test_one_depth_block_holds_every_layer_per_module_kind():
    assert blocks(24, 1) == [list(range(24))] and blocks(2, 1) == [[0, 1]]
    assert partition_of("adapter_o/13", 24, 1) == "adapter_o/block0"
    assert partitions_of(["lora/0", "adapter/0", "lora/5", "adapter/1"], 6, 1) == ["lora/block0", "adapter/block0"]


def test_union_rule_keeps_ties_and_adds_each_criteria_favourite_partition():
    parts = ["p1", "p2", "p3", "p4"]
    counts = {
        "a": {"p1": 3, "p2": 1, "p3": 0},
        "b": {"p1": 3, "p2": 0, "p3": 0},  # ties a in p1: both kept
        "c": {"p1": 1, "p2": 2, "p3": 0},  # wins p2
        "d": {"p1": 0, "p2": 0, "p3": 1},  # wins p3
        "e": {"p1": 2, "p2": 1, "p3": 0},  # wins nowhere, but prunes p1 most: (b) adds it to p1
        "f": {"p1": 1, "p2": 1, "p3": 0},  # its favourite is a tie of p1 and p2: added to both
    }
    got = assign_by_frequency(counts, parts)
    assert got["p1"] == ["a", "b", "e", "f"]
    assert got["p2"] == ["c", "f"]
    assert got["p3"] == ["d"]
    assert got["p4"] == list(counts)  # nothing was pruned there: every count ties at 0


def test_a_plain_argmax_would_differ():
    counts = {"a": {"p1": 5, "p2": 4}, "b": {"p1": 0, "p2": 1}}
    assert assign_by_frequency(counts, ["p1", "p2"]) == {"p1": ["a"], "p2": ["a", "b"]}  # argmax alone: p2 -> a


def test_paper_table_by_block():
    table = paper_assignment(["lora/block0", "lora/block3", "adapter/block1", "adapter_o/block3"])
    assert table == {"lora/block0": ["activation", "threshold"], "lora/block3": ["gradient"],
                     "adapter/block1": ["sensitivity", "weight"], "adapter_o/block3": ["sensitivity"]}


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "assignment.json"
    save_assignment(path, {"lora/block0": ["gradient"], "adapter/block0": ["weight", "zeros"]}, "warmup", "abc",
                    "bert", 2, counts={"gradient": {"lora/block0": 1}})
    return path


def test_assignment_round_trip_on_the_same_base(saved):
    got = load_assignment(saved.parent, ["lora/block0", "adapter/block0"], "abc", 2)
    assert got == {"lora/block0": ["gradient"], "adapter/block0": ["weight", "zeros"]}


@pytest.mark.parametrize("change, message", [
    (dict(base_fingerprint="other"), "was made for another base model"),
    (dict(num_layers=12), "was made for another base model"),
    (dict(partitions={"lora/block0": ["gradient"]}), "no criteria for partition adapter/block0"),
    (dict(partitions={"lora/block0": ["gradient"], "adapter/block0": ["size"]}), "unknown criterion 'size'"),
    (dict(schema_version=7), "is not a version-1 assignment"),
    (dict(blocks=[[0, 1]]), "was made with 1 depth blocks, this search uses 4"),
])
def test_a_wrong_assignment_file_is_a_one_line_error(saved, change, message):
    saved.write_text(json.dumps({**json.loads(saved.read_text()), **change}))
    with pytest.raises(LightPeftError, match=message) as err:
        load_assignment(saved, ["lora/block0", "adapter/block0"], "abc", 2)
    assert "\n" not in str(err.value)


def test_a_missing_or_corrupt_assignment_file_is_a_one_line_error(tmp_path):
    with pytest.raises(LightPeftError, match="does not exist"):
        load_assignment(tmp_path / "none.json", ["lora/block0"], "abc", 2)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(LightPeftError, match="is not valid JSON"):
        load_assignment(tmp_path / "bad.json", ["lora/block0"], "abc", 2)


def test_an_assignment_is_reused_only_with_the_depth_blocks_it_was_made_with(tmp_path):
    path = tmp_path / "assignment.json"
    table = {"lora/block0": ["gradient"], "adapter/block0": ["weight"]}
    save_assignment(path, table, "warmup", "abc", "bert", 2, num_blocks=1)
    assert json.loads(path.read_text())["blocks"] == [[0, 1]]
    assert load_assignment(path, list(table), "abc", 2, num_blocks=1) == table
    # the same partition names, other layers: block0 of 4 blocks is layer 0 only
    with pytest.raises(LightPeftError, match="made with 1 depth blocks, this search uses 4; search with the "
                       "--depth_blocks it was made with"):
        load_assignment(path, list(table), "abc", 2)
