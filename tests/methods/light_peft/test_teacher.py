"""The distillation teacher rebuilt from the base and an estimate directory is the estimation model as it finished."""

import pytest
import torch
from transformers import TrainerCallback

from lightpeft import DataConfig, EstimateConfig, LightPeftError, LightPeftTrainingArguments, ModelConfig, PeftSettings
from lightpeft.methods.light_peft import estimate as estimate_module
from lightpeft.methods.light_peft.estimate import Estimate
from lightpeft.methods.light_peft.masks import GATES_ATTR
from lightpeft.methods.light_peft.teacher import estimation_model
from lightpeft.stages.estimate import estimate
from lightpeft.stages.prepare import load_task_base, prepare

from conftest import save_tiny_model_dir, tiny_batch


class _FinalLogits(TrainerCallback):
    """Logits of a fixed batch from the estimation model at the end of its training, in eval mode."""

    def __init__(self, batch):
        self.batch, self.logits = batch, None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.logits = model(**self.batch).logits.clone()
        model.train(was_training)


@pytest.mark.parametrize("peft", ["lora", "adapter"])
def test_rebuilt_teacher_gives_the_logits_of_the_finished_estimation_model(peft, tiny_model_dir, tiny_csv,
                                                                          tmp_path, monkeypatch):
    batch = tiny_batch()
    probe = _FinalLogits(batch)
    make_trainer = estimate_module.make_trainer

    def with_probe(*args, callbacks=(), **kwargs):
        return make_trainer(*args, callbacks=[*callbacks, probe], **kwargs)

    monkeypatch.setattr(estimate_module, "make_trainer", with_probe)
    model_cfg, data_cfg = ModelConfig(str(tiny_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16)
    args = LightPeftTrainingArguments(output_dir=str(tmp_path / "est"), per_device_train_batch_size=8, seed=3,
                                      learning_rate=5e-2, disable_tqdm=True, use_cpu=True, num_train_epochs=1)
    estimate(model_cfg, data_cfg, PeftSettings(peft=peft), EstimateConfig(estimate_steps=4), args)
    est = Estimate.load(tmp_path / "est")
    assert not torch.all(est.head_masks == 1)  # the gates moved: the test can tell learned gates from ones
    task = prepare(model_cfg, data_cfg).task
    teacher = estimation_model(load_task_base(model_cfg, task, seed=3), est)
    with torch.no_grad():
        error = (teacher(**batch).logits - probe.logits).abs().max().item()
        gates = teacher.get_submodule(GATES_ATTR) if peft == "adapter" else \
            teacher.get_base_model().get_submodule(GATES_ATTR)
        gates.head.fill_(1.0)
        gates.ffn.fill_(1.0)
        ones_error = (teacher(**batch).logits - probe.logits).abs().max().item()
    assert error <= 1e-6 and ones_error > 100 * max(error, 1e-8), (error, ones_error)  # learned gates, not ones
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_teacher_from_another_base_is_refused(finished_estimate_dir, tiny_csv, tmp_path):
    other = save_tiny_model_dir(tmp_path / "other", seed=7)
    model_cfg = ModelConfig(str(other))
    task = prepare(model_cfg, DataConfig(task=str(tiny_csv), max_seq_length=16)).task
    with pytest.raises(LightPeftError, match="another base checkpoint") as err:
        estimation_model(load_task_base(model_cfg, task), Estimate.load(finished_estimate_dir))
    assert "\n" not in str(err.value)


@pytest.fixture
def finished_estimate_dir(tiny_model_dir, tiny_csv, tmp_path):
    args = LightPeftTrainingArguments(output_dir=str(tmp_path / "est"), per_device_train_batch_size=8, seed=0,
                                      disable_tqdm=True, use_cpu=True, num_train_epochs=1)
    estimate(ModelConfig(str(tiny_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16), PeftSettings(),
             EstimateConfig(estimate_steps=2), args)
    return tmp_path / "est"
