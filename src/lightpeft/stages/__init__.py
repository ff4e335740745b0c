"""Runnable stages on top of the core and the methods: prepare data, train any plan, chain a method's stages
(`run`), and use a trained run (run-directory format, export, predict).

  prepare.py   tokenizer, task data and the task's base model, shared by a run's stages
  outputs.py   output directories: marker, overwrite rules, lock, atomic staging, main process only
  resume.py    resumable staging areas: finished work of an interrupted command, checked settings, checkpoints
  train.py     the training stage (`lightpeft train`): any plan, or vanilla PEFT without one
  run.py       `lightpeft run`: estimate -> plan -> train (and the vanilla baseline beside it)
  run_dir.py   reading run directories back: `load_pruned`, `load_tasks`
  export.py    compact self-contained models (and vanilla peft adapters)
  predict.py   `lightpeft predict` on runs and exports
"""
