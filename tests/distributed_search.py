"""Run by tests/test_distributed.py under torchrun: a PrunePEFT search on every rank, dump each rank's decisions."""

import json
import os
import sys

from lightpeft import DataConfig, LightPeftTrainingArguments, ModelConfig, PeftSettings, SearchConfig, search


def main(model_dir: str, csv: str, out: str) -> None:
    args = LightPeftTrainingArguments(output_dir=out, per_device_train_batch_size=4, learning_rate=5e-3,
                                      disable_tqdm=True, use_cpu=True, seed=0)
    cfg = SearchConfig(budget_fraction=0.5, round_steps=3, warmup_samples=16, warmup_turns=1, warmup_prune=1,
                       warmup_epochs=1)
    outcome = search(ModelConfig(model_name_or_path=model_dir), DataConfig(task=csv, max_seq_length=16),
                     PeftSettings(), cfg, args, save=False)
    record = {"world_size": int(os.environ["WORLD_SIZE"]), "plan": outcome.plan.to_json(),
              "assignment": outcome.assignment, "p": [r["p"] for r in outcome.rounds],
              "removed": [r["removed"] for r in outcome.rounds]}
    with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
