"""Eq. 1 on fake scores: per-criterion normalised scores, rank weights, one softmax over every remaining module;
the released code's block_dynamic; ties never favour the first layer."""

import math

import pytest

from lightpeft.methods.prune_peft.combine import (
    block_dynamic,
    eq1,
    mean_ranks,
    prunability,
    random_order,
    removal_order,
)


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_eq1_by_hand():
    scores = {"weight": {"m1": 1.0, "m2": 3.0, "m3": 2.0, "m4": 5.0},  # lowest pruned
              "threshold": {"m1": 9.0, "m2": 9.0, "m3": 0.1, "m4": 0.3}}  # highest pruned; m1, m2 do not use it
    assignment = {"m1": ["weight"], "m2": ["weight"], "m3": ["weight", "threshold"], "m4": ["weight", "threshold"]}
    p = eq1(scores, assignment)
    # weight: s = (5 - w) / 4 = 1, .5, .75, 0 -> ranks 0, 2, 1, 3; threshold over m3, m4 only: s = 0, 1 -> ranks 1, 0
    combined = {"m1": sig(3) * 1.0, "m2": sig(1) * 0.5, "m3": (sig(2) * 0.75 + sig(2) * 0.0) / 2,
                "m4": (sig(0) * 0.0 + sig(3) * 1.0) / 2}
    total = sum(math.exp(v) for v in combined.values())
    for m, v in combined.items():
        assert p[m] == pytest.approx(math.exp(v) / total)
    assert sum(p.values()) == pytest.approx(1.0)  # one softmax over all modules, not per partition
    assert removal_order(p, list(assignment)) == ["m1", "m4", "m2", "m3"]


def test_a_partition_with_one_module_left_is_not_emptied_first():
    """The released code's in-block softmax gives a lone module p = 1; Eq. 1 over all modules does not."""
    scores = {"gradient": {"a0": 0.5, "a1": 0.1, "a2": 0.9, "b0": 0.3}}
    assignment = {m: ["gradient"] for m in scores["gradient"]}
    partition = {"a0": "A", "a1": "A", "a2": "A", "b0": "B"}
    assert block_dynamic(scores, assignment, partition)["b0"] == pytest.approx(1.0)
    p = eq1(scores, assignment)
    assert removal_order(p, list(assignment))[0] == "a1"  # the lowest gradient goes first


def test_ties_share_their_rank_so_order_does_not_decide():
    assert mean_ranks({"a": 1.0, "b": 1.0, "c": 0.0}) == {"a": 0.5, "b": 0.5, "c": 2.0}
    assert prunability({"a": 2.0, "b": 2.0}, prune_lowest=True) == {"a": 0.0, "b": 0.0}
    p = eq1({"zeros": {"a": 1.0, "b": 1.0, "c": 1.0}}, {m: ["zeros"] for m in "abc"})
    assert len(set(p.values())) == 1  # a criterion that cannot tell modules apart gives them equal p


def test_block_dynamic_keeps_the_top_four_of_each_block():
    scores = {"weight": {f"m{i}": float(i) for i in range(6)}}
    p = block_dynamic(scores, {m: ["weight"] for m in scores["weight"]}, {m: "A" for m in scores["weight"]})
    assert [m for m, v in p.items() if v == 0.0] == ["m4", "m5"]  # lowest weight is pruned first: m0..m3 stay
    assert sum(p.values()) == pytest.approx(1.0)


def test_random_order_is_seeded():
    modules = [f"m{i}" for i in range(8)]
    assert removal_order(random_order(modules, 3), modules) == removal_order(random_order(modules, 3), modules)
    assert removal_order(random_order(modules, 3), modules) != removal_order(random_order(modules, 4), modules)
