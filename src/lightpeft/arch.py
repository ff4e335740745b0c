"""Per-architecture structure tables: where a model keeps its layers, attention projections and FFN.

Everything else in lightpeft (masks, importance, surgery, plans) speaks in *roles* (q, k, v, o, ffn_in, ffn_out)
and asks this module where a role lives, so a new family is one small table entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .errors import LightPeftError


@dataclass(frozen=True)
class ArchSpec:
    """Where the prunable structure lives, relative to the backbone (`model.base_model`)."""

    family: str
    layers: str  # dotted path from the backbone to the ModuleList of blocks
    q: str  # paths from one block
    k: str
    v: str
    o: str  # attention output projection; its *input* is the per-head context
    ffn_in: tuple[str, ...]  # FFN input projections (one for GELU MLPs; gate + up for SwiGLU)
    ffn_out: str  # FFN output projection; its *input* is the per-neuron activation
    attention: str  # the module to replace by a no-op when a layer loses every head

    def role_paths(self, role: str) -> tuple[str, ...]:
        """Block-relative paths of the linears that play `role`."""
        if role == "ffn_in":
            return self.ffn_in
        return (getattr(self, role),)


BERT_LIKE = ArchSpec(
    family="bert",
    layers="encoder.layer",
    q="attention.self.query",
    k="attention.self.key",
    v="attention.self.value",
    o="attention.output.dense",
    ffn_in=("intermediate.dense",),
    ffn_out="output.dense",
    attention="attention.self",
)

ARCHITECTURES: dict[str, ArchSpec] = {
    "bert": BERT_LIKE,
    "roberta": BERT_LIKE,
    "xlm-roberta": BERT_LIKE,
}


def get_arch(model_or_config) -> ArchSpec:
    """Structure table for a model or config; a clear error names the supported families otherwise."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise LightPeftError(
            f"model type {model_type!r} is not supported yet; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[model_type]


def backbone_prefix(model: nn.Module) -> str:
    """Dotted name of the backbone inside a task model (`bert` in BertForSequenceClassification), or ''."""
    prefix = getattr(model, "base_model_prefix", "")
    return prefix if prefix and hasattr(model, prefix) else ""


def layer_modules(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a (task or bare) HF model, in order."""
    return list(model.base_model.get_submodule(get_arch(model).layers))


def num_layers(model: nn.Module) -> int:
    return len(layer_modules(model))


def head_size(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def num_heads(config) -> int:
    return config.num_attention_heads


def ffn_size(config) -> int:
    return config.intermediate_size


def layer_path(model: nn.Module, layer: int) -> str:
    """Dotted name of block `layer` from the top of `model`."""
    prefix = backbone_prefix(model)
    path = f"{get_arch(model).layers}.{layer}"
    return f"{prefix}.{path}" if prefix else path


def linear_roles(model: nn.Module, roles) -> dict[str, tuple[int, str]]:
    """Full module names (from the top of `model`) of the linears playing `roles` -> (layer, role), in order."""
    spec = get_arch(model)
    out = {}
    for layer in range(num_layers(model)):
        for role in roles:
            for path in spec.role_paths(role):
                out[f"{layer_path(model, layer)}.{path}"] = (layer, role)
    return out


def linear_names(model: nn.Module, roles) -> list[str]:
    return list(linear_roles(model, roles))
