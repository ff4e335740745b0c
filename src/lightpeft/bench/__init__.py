"""Side-by-side measurement of vanilla PEFT and Light-PEFT (`lightpeft bench`)."""

from .config import BenchConfig
from .runner import run_bench

__all__ = ["BenchConfig", "run_bench"]
