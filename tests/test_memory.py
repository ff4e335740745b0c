"""Live tensor bytes (`memory.LiveTensors`): a hand count on known tensors, views counted once, frees seen inside
autograd, and agreement with torch's own MemTracker where that tool works (every parameter trainable)."""

import pytest
import torch

from lightpeft.memory import LiveTensors

from conftest import tiny_batch, tiny_model

F32 = 4


def test_peak_is_the_sum_at_the_highest_point():
    with LiveTensors() as live:
        a = torch.empty(1000)                        # 4,000
        b = torch.empty(2000)                        # 12,000
        del a                                        # 8,000
        c = torch.empty(250, dtype=torch.float64)    # 10,000
        d = torch.empty(1500)                        # 16,000: the peak
        del b, d                                     # 2,000
        e = torch.empty(3000)                        # 14,000
    assert live.peak_bytes == 16_000
    assert live.current_bytes == 14_000 and c.numel() + e.numel() == 3250
    assert live.start_bytes == 0


def test_views_and_in_place_ops_share_one_storage():
    base = torch.zeros(100, 10)  # 4,000 bytes, live at entry
    with LiveTensors(base, base.view(-1), [base, {"again": base}]) as live:
        views = [base.view(10, 100), base[::2], base.t(), base.unsqueeze(0), base.reshape(-1), base.expand(3, 100, 10)]
        base.add_(1)
        base[0].mul_(2)
        assert live.current_bytes == 4_000
        copy = base.t().contiguous()  # a new storage
    assert live.start_bytes == 4_000 and live.peak_bytes == 8_000
    assert len(views) == 6 and copy.shape == (10, 100)


def test_only_what_was_passed_in_counts_at_entry():
    passed, other = torch.zeros(500), torch.zeros(2000)
    with LiveTensors(passed) as live:
        total = passed + 1  # a new 2,000-byte storage; `other` is never touched
    assert live.start_bytes == 2_000 and live.peak_bytes == 4_000 and other.sum() == 0 and total.sum() == 500


def test_autograd_buffers_and_gradients_are_counted_and_freed():
    w = torch.randn(64, 64, requires_grad=True)  # 16,384 bytes
    x = torch.randn(32, 64)                        # 8,192
    with LiveTensors(w, x) as live:
        hidden = x @ w                             # 8,192, freed once relu has run
        y = hidden.relu()                          # 8,192, saved by autograd for relu's backward
        del hidden
        loss = y.sum()
        loss.backward()                            # w.grad: 16,384, made by autograd's own operators
        del y, loss
        end = live.current_bytes
    assert end == (64 * 64 * 2 + 32 * 64) * F32  # w, w.grad, x: the graph and its activations are gone
    assert live.peak_bytes >= (64 * 64 * 2 + 32 * 64 * 2) * F32


def test_inference_mode_forward_counts_weights_and_activations():
    model = tiny_model()
    batch = tiny_batch(batch=4, length=16)
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    inputs = sum(t.numel() * t.element_size() for t in batch.values())
    with torch.inference_mode(), LiveTensors(model, batch) as live:
        model(**batch)
    assert live.start_bytes == weights + inputs
    assert live.peak_bytes > live.start_bytes + 4 * 16 * 32 * F32  # at least one hidden-state tensor on top


@pytest.mark.filterwarnings("ignore:Module is None")  # MemTracker's own hooks on modules autograd has let go
def test_agrees_with_torch_mem_tracker_on_a_fully_trainable_step():
    """torch's MemTracker refuses frozen parameters (PEFT) and repeated steps, so it is no tool for the bench;
    where it works, the two count the same bytes."""
    mem_tracker = pytest.importorskip("torch.distributed._tools.mem_tracker")
    model = tiny_model().train()
    batch = {**tiny_batch(batch=8, length=16), "labels": torch.arange(8) % 3}
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)

    def step():
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # optimizer state exists from here on
    with LiveTensors(model, optimizer, batch) as live:
        step()
    tracker = mem_tracker.MemTracker()
    tracker.track_external(model, optimizer, batch)
    with tracker:
        step()
    assert live.peak_bytes == tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
