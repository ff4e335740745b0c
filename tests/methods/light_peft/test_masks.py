import torch

from lightpeft.methods.light_peft import masks

from conftest import tiny_batch, tiny_model
from helpers import lora_everywhere


def test_all_ones_gates_leave_logits_unchanged(family):
    model = lora_everywhere(tiny_model(family))
    batch = tiny_batch()
    reference = model(**batch).logits
    handle = masks.attach_gates(model.get_base_model())
    assert torch.allclose(model(**batch).logits, reference, atol=1e-6)
    handle.detach(model.get_base_model())
    assert not hasattr(model.get_base_model(), masks.GATES_ATTR)


def test_gates_change_logits_and_receive_gradients(family):
    model = lora_everywhere(tiny_model(family))
    batch = tiny_batch()
    reference = model(**batch).logits.detach()
    handle = masks.attach_gates(model.get_base_model())
    with torch.no_grad():
        handle.gates.head[0, 1] = 0.0
    logits = model(**batch).logits
    assert not torch.allclose(logits, reference, atol=1e-4)
    logits.sum().backward()
    assert handle.gates.head.grad is not None and handle.gates.ffn.grad.abs().sum() > 0


def test_gates_are_trainable_parameters_of_the_model():
    model = lora_everywhere(tiny_model())
    masks.attach_gates(model.get_base_model())
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(n.endswith(f"{masks.GATES_ATTR}.head") for n in names)
    assert any(n.endswith(f"{masks.GATES_ATTR}.ffn") for n in names)


def test_l1_is_sum_of_absolute_values():
    gates = masks.Gates(2, 3, 5)
    with torch.no_grad():
        gates.head[0, 0] = -2.0
    assert torch.isclose(gates.l1(), torch.tensor(2 * 3 - 1 + 2.0 + 2 * 5))
