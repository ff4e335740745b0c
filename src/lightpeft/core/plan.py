"""Plan: which heads, FFN neurons, PEFT modules and PEFT units (LoRA ranks, adapter bottleneck units) survive.

Plain JSON, fingerprinted to its base.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import MISSING, dataclass, field
from pathlib import Path

from lightpeft.core.peft_kinds import KINDS
from lightpeft.errors import LightPeftError
from lightpeft.io import write_json

SCHEMA_VERSION = 3  # 3: a PEFT kind per module (`peft_modules[name]["kind"]`, `peft_configs`), `method`
READABLE_VERSIONS = (2, 3)  # 2 had one `peft` kind and `peft_config` for the whole plan: upgraded on load
PLAN_FILE = "plan.json"


@dataclass
class Plan:
    """Survivors of pruning, per layer and per PEFT module.

    `heads[l]` / `ffn[l]`: kept head / neuron indices of layer l (sorted).
    `peft_modules`: full name of the linear the module sits on (from the top of the HF task model) ->
    {"layer", "role", "kind", "units"}: its PEFT kind (`lora`, `adapter`: `core.peft_kinds`) and the kept unit
    indices (LoRA ranks, adapter bottleneck units) of the full-size module (sorted, non-empty). A plan may put
    different kinds on different modules. `peft_configs`: kind -> its settings (`PeftSettings.method_config()`: `r`
    units per full-size module, `dropout`, LoRA `alpha`, adapter `activation`, `init_std`, `scaling`,
    `placement`); LoRA's scaling alpha / r of the full rank is kept after rank pruning. `method`: what made the plan
    (`light-peft`, or `vanilla`: nothing pruned, fresh PEFT on the vanilla targets).
    """

    base_fingerprint: str
    model_type: str
    num_layers: int
    num_heads: int
    head_size: int
    ffn_size: int
    heads: list[list[int]]
    ffn: list[list[int]]
    peft_modules: dict[str, dict]
    peft_configs: dict[str, dict]
    method: str = "light-peft"
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
        if version not in READABLE_VERSIONS:
            raise LightPeftError(
                f"{source} has schema version {version!r}, this lightpeft reads {READABLE_VERSIONS[0]} to "
                f"{SCHEMA_VERSION}; re-run `lightpeft plan` with this version"
            )
        if version == 2:
            data = _upgrade_from_2(data)
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = required - set(data)
        if missing:
            raise LightPeftError(f"{source} is incomplete (missing {', '.join(sorted(missing))}); re-run `lightpeft plan`")
        plan = cls(**{k: v for k, v in data.items() if k in names})
        plan.check_kinds(source)
        return plan

    def check_kinds(self, source: str = "plan") -> None:
        """Every module names a known PEFT kind whose settings the plan carries."""
        for field_name in ("peft_modules", "peft_configs"):
            if not isinstance(getattr(self, field_name), dict):
                raise LightPeftError(f"{source} has {field_name} of type {type(getattr(self, field_name)).__name__}, "
                                     "expected an object; re-create it with `lightpeft plan`")
        for name, entry in self.peft_modules.items():
            kind = entry.get("kind") if isinstance(entry, dict) else None
            if not isinstance(kind, str) or kind not in KINDS or kind not in self.peft_configs:
                raise LightPeftError(f"{source} gives PEFT module {name} the kind {kind!r}, which "
                                     f"{'has no settings in the plan' if isinstance(kind, str) and kind in KINDS else 'is unknown'}; "
                                     "re-run `lightpeft plan`")

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
    def kinds(self) -> list[str]:
        """The PEFT kinds the plan uses, in registry order."""
        used = {entry["kind"] for entry in self.peft_modules.values()}
        return [kind for kind in KINDS if kind in used]

    @property
    def peft(self) -> str:
        """The plan's PEFT kind, `+`-joined when it mixes several (`lora+adapter`); for summaries and tables."""
        return "+".join(self.kinds)

    def only_kinds(self, kinds: list[str]) -> "Plan":
        """A copy whose PEFT modules are those of `kinds` (the structure as it is)."""
        modules = {n: e for n, e in self.peft_modules.items() if e["kind"] in kinds}
        return dataclasses.replace(self, peft_modules=modules,
                                   peft_configs={k: v for k, v in self.peft_configs.items() if k in kinds})

    def kept_units(self, name: str) -> list[int]:
        return self.peft_modules[name]["units"]

    def role_of(self, name: str) -> tuple[int, str]:
        entry = self.peft_modules[name]
        return entry["layer"], entry["role"]

    @property
    def kv_head_count(self) -> int:
        """Key/value heads per layer before pruning (as many as query heads without grouped-query attention)."""
        return self.num_kv_heads or self.num_heads

    @property
    def kv_group_size(self) -> int:
        """Query heads per key/value head."""
        return self.num_heads // self.kv_head_count

    def kept_kv_heads(self, layer: int) -> list[int]:
        return self.kv_heads[layer] if self.kv_heads else self.heads[layer]


def with_kind(modules: dict[str, dict], kind: str) -> dict[str, dict]:
    """`modules` (name -> {"layer", "role", "units"}) with every module of PEFT kind `kind`."""
    return {name: {**entry, "kind": kind} for name, entry in modules.items()}


def _upgrade_from_2(data: dict) -> dict:
    """A schema-2 plan (one PEFT kind for every module) in schema 3's terms; nothing else changed."""
    data = dict(data)
    kind = data.pop("peft", None)
    data["peft_modules"] = with_kind(data.get("peft_modules", {}), kind)
    data["peft_configs"] = {kind: data.pop("peft_config", {})}
    data["method"] = data.pop("kind", "light-peft")
    data["schema_version"] = SCHEMA_VERSION
    return data
