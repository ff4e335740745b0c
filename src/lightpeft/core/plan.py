"""Plan: which heads, FFN neurons, PEFT modules and PEFT units (LoRA ranks, adapter bottleneck units) survive.

Plain JSON, fingerprinted to its base.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import MISSING, dataclass, field
from pathlib import Path

from lightpeft.config import PEFT_TYPES
from lightpeft.errors import LightPeftError
from lightpeft.io import write_json

SCHEMA_VERSION = 2  # 2: generic PEFT (`peft`, `peft_config`, `peft_modules`); 1 was LoRA-only
PLAN_FILE = "plan.json"


@dataclass
class Plan:
    """Survivors of pruning, per layer and per PEFT module.

    `heads[l]` / `ffn[l]`: kept head / neuron indices of layer l (sorted). `peft`: `lora` or `adapter`.
    `peft_modules`: full name of the linear the module sits on (from the top of the HF task model) ->
    {"layer", "role", "units"}, where units are the kept unit indices (LoRA ranks, adapter bottleneck units) of the
    estimated module (sorted, non-empty). `peft_config`: the estimation's settings (`PeftSettings.method_config()`:
    `r` units per module, `dropout`, LoRA `alpha`, adapter `activation`, `init_std`, `scaling`, `placement`); the
    method keeps LoRA's scaling alpha / r after rank pruning.
    """

    base_fingerprint: str
    model_type: str
    num_layers: int
    num_heads: int
    head_size: int
    ffn_size: int
    heads: list[list[int]]
    ffn: list[list[int]]
    peft: str
    peft_config: dict
    peft_modules: dict[str, dict]
    kind: str = "light-peft"  # or "vanilla": nothing pruned, fresh PEFT on the vanilla targets
    ratios: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    num_kv_heads: int | None = None  # key/value heads per layer before pruning (None: one per query head)
    kv_heads: list[list[int]] = field(default_factory=list)  # kept KV heads per layer ([]: the same as `heads`)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict, source: str = "plan") -> "Plan":
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != SCHEMA_VERSION:
            raise LightPeftError(
                f"{source} has schema version {version!r}, this lightpeft reads {SCHEMA_VERSION}; "
                "re-run `lightpeft plan` with this version"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = required - set(data)
        if missing:
            raise LightPeftError(f"{source} is incomplete (missing {', '.join(sorted(missing))}); re-run `lightpeft plan`")
        if data["peft"] not in PEFT_TYPES:
            raise LightPeftError(f"{source} names an unknown PEFT type {data['peft']!r}; re-run `lightpeft plan`")
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        path = Path(path)
        if path.is_dir():
            path = path / PLAN_FILE
        if not path.is_file():
            raise LightPeftError(f"plan file {path} does not exist; pass a plan.json or a run directory holding one")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise LightPeftError(f"plan file {path} is corrupt ({err.msg if hasattr(err, 'msg') else err}); "
                                 "re-create it with `lightpeft plan`") from None
        return cls.from_json(data, source=f"plan file {path}")

    def check_base(self, fingerprint: str) -> None:
        if fingerprint != self.base_fingerprint:
            raise LightPeftError(
                f"this plan was made for base checkpoint {self.base_fingerprint}, but the model given is "
                f"{fingerprint}; pass the base checkpoint the estimate used"
            )

    @property
    def units_per_module(self) -> int:
        """Units of an unpruned module: the estimation's LoRA rank or adapter bottleneck size."""
        return self.peft_config["r"]

    def kept_units(self, name: str) -> list[int]:
        return self.peft_modules[name]["units"]

    def role_of(self, name: str) -> tuple[int, str]:
        entry = self.peft_modules[name]
        return entry["layer"], entry["role"]

    def kept_kv_heads(self, layer: int) -> list[int]:
        return self.kv_heads[layer] if self.kv_heads else self.heads[layer]




















