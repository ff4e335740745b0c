"""Shared by every method: structure tables, task heads, base loading, PEFT modules, plans, physical surgery,
building a pruned model, counting it, and the Trainer wiring.
"""
