"""Two processes (torchrun, gloo on CPU) must end estimation with one plan, identical on every rank."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.distributed
def test_two_processes_produce_one_identical_plan(tiny_model_dir, tiny_csv, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    script = Path(__file__).parent / "distributed_estimate.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(script), str(tiny_model_dir), str(tiny_csv),
         str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert ranks[0]["plan"] == ranks[1]["plan"]
    assert ranks[0]["module_importance"] == ranks[1]["module_importance"]
