"""Run by tests/test_distributed.py under torchrun: estimate + plan on every rank, dump each rank's plan."""

import json
import os
import sys

from lightpeft import DataConfig, EstimateConfig, LightPeftTrainingArguments, ModelConfig, PeftSettings, make_plan
from lightpeft.stages.estimate import estimate


def main(model_dir: str, csv: str, out: str) -> None:
    args = LightPeftTrainingArguments(output_dir=out, per_device_train_batch_size=4, learning_rate=5e-3,
                                      disable_tqdm=True, use_cpu=True, seed=0)
    result = estimate(ModelConfig(model_name_or_path=model_dir), DataConfig(task=csv, max_seq_length=16),
                      PeftSettings(), EstimateConfig(estimate_steps=6), args, save=False)
    plan = make_plan(result)
    rank = os.environ["RANK"]
    record = {"world_size": int(os.environ["WORLD_SIZE"]), "plan": plan.to_json(),
              "module_importance": result.module_importance.tolist()}
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
