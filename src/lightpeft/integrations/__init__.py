"""Light-PEFT inside code that is not lightpeft's: a user's own transformers (or TRL) Trainer script."""

from lightpeft.integrations.hf_trainer import LightPeft

__all__ = ["LightPeft"]
