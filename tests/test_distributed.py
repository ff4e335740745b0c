"""Two processes (torchrun, gloo on CPU) must end estimation with one plan, identical on every rank, and apply the
same gradients per optimizer step as one process on the same rows."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_loss_scaling import assert_same_grads

from grad_probe import ROWS, step_grads


def _torchrun(script: str, *argv: str) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(Path(__file__).parent / script), *argv],
        capture_output=True, text=True, timeout=300, env=env,
    )


@pytest.mark.distributed
def test_two_processes_produce_one_identical_plan(tiny_model_dir, tiny_csv, tmp_path):
    proc = _torchrun("distributed_estimate.py", str(tiny_model_dir), str(tiny_csv), str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert ranks[0]["plan"] == ranks[1]["plan"]
    assert ranks[0]["module_importance"] == ranks[1]["module_importance"]


@pytest.mark.distributed
def test_two_processes_apply_the_same_step_gradients_as_one(tmp_path):
    """Task gradient = mean over the step's rows, L1 gradient = lambda * sign(gate): the same on 2 processes (with
    and without accumulation) as on one."""
    proc = _torchrun("distributed_grads.py", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = torch.load(tmp_path / "grads.pt")
    assert saved["world_size"] == 2
    one_process = {}
    for (kind, stage, l1_coef, accumulation), (grads, norm) in saved["results"].items():
        if (kind, stage, l1_coef) not in one_process:
            one_process[kind, stage, l1_coef] = step_grads(kind, stage, ROWS, 1, str(tmp_path / "one"), l1_coef)
        want, want_norm = one_process[kind, stage, l1_coef]
        assert_same_grads(grads, want)
        assert norm == pytest.approx(want_norm, rel=1e-4), (kind, stage, l1_coef, accumulation)


@pytest.mark.distributed
def test_two_processes_search_one_identical_plan(tiny_model_dir, tiny_csv, tmp_path):
    """PrunePEFT: all-reduced statistics, so both ranks score, assign and remove the same modules."""
    proc = _torchrun("distributed_search.py", str(tiny_model_dir), str(tiny_csv), str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert ranks[0]["removed"] and ranks[0]["removed"] == ranks[1]["removed"]
    assert ranks[0]["assignment"] == ranks[1]["assignment"] and ranks[0]["p"] == ranks[1]["p"]
    assert ranks[0]["plan"] == ranks[1]["plan"]


def test_fsdp2_shards_lora_gradients_so_estimation_refuses_it(tmp_path):
    """Why `--fsdp` / DeepSpeed are refused: under FSDP2 (2 processes, gloo on CPU) LoRA gradients are sharded
    DTensors, and Taylor scores from a rank's local shard are not the unit scores (wrong values, half of them); the
    gathered full tensors would give the one-process scores. And the refusal itself is one line."""
    import distributed_fsdp

    from lightpeft import LightPeftError, LightPeftTrainingArguments

    distributed_fsdp.main(str(tmp_path))
    proc = _torchrun("distributed_fsdp.py", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = torch.load(tmp_path / "fsdp_scores_1.pt")["scores"]
    sharded = torch.load(tmp_path / "fsdp_scores_2.pt")["scores"]
    assert {s["grad_type"] for s in sharded.values()} == {"DTensor"}
    r = 4
    for name, reference in one.items():
        torch.testing.assert_close(sharded[name]["full"], reference["full"], rtol=1e-4, atol=1e-7)
        assert sharded[name]["local_a"].shape == (r // 2,)  # a shard holds half the units' A rows
        assert not torch.allclose(sharded[name]["local_b"], reference["full_b"], rtol=1e-3)  # B over half the outputs
    with pytest.raises(LightPeftError, match=r"^FSDP \(sharded training\) is not supported"):
        LightPeftTrainingArguments(output_dir=str(tmp_path / "x"), fsdp="full_shard", use_cpu=True)
