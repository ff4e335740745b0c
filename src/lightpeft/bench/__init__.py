"""Side-by-side measurement of vanilla PEFT and Light-PEFT (`lightpeft bench`)."""

from lightpeft.bench.config import BenchConfig
from lightpeft.bench.runner import run_bench

__all__ = ["BenchConfig", "run_bench"]
