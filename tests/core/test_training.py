"""The estimation optimizer: gates in their own group, with the reference's learning rate and weight decay."""

import pytest

from grad_probe import build_trainer


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_gate_group_takes_the_runs_weight_decay(weight_decay, tmp_path):
    trainer = build_trainer("classification", "estimation", str(tmp_path), weight_decay=weight_decay,
                            learning_rate=1e-3)
    optimizer = trainer.create_optimizer()
    gate_ids = {id(p) for p in trainer.gates.parameters()}
    gate_groups = [g for g in optimizer.param_groups if gate_ids & {id(p) for p in g["params"]}]
    assert len(gate_groups) == 1 and {id(p) for p in gate_groups[0]["params"]} == gate_ids
    assert gate_groups[0]["weight_decay"] == weight_decay  # the reference: args.weight_decay on the mask groups
    assert gate_groups[0]["lr"] == pytest.approx(1e-3 * trainer.mask_lr_coef)
