"""Light-PEFT: estimate (gates + L1 and PEFT importance in a short joint run) -> plan (selection at ratios or a
budget) -> the pruned model trains through `lightpeft.stages.train`.

  config.py        EstimateConfig, PlanConfig
  masks.py         gates on heads and FFN neurons (forward pre-hooks)
  importance.py    module output-norm ratio and unit Taylor scores
  trainer.py       the estimation Trainer (L1 term, importance after each step, gate optimizer group)
  convergence.py   stop estimation once the keep sets settle
  estimate.py      the estimation run and its artifact (estimate directory)
  selection.py     the quantile rule: kept heads, neurons, modules, units
  budget.py        ratios from a training speed-up or parameter budget
  planning.py      estimate -> Plan
  stage.py         the `lightpeft estimate` stage
"""
