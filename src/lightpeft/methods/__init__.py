"""The pruning methods. Each one turns a base checkpoint and task data into a `Plan`; the train stage
(`lightpeft.stages.train`) trains any plan without asking which method made it.

  light_peft/   masked early pruning of heads, FFN neurons, PEFT modules and ranks (Gu et al., 2024)
  prune_peft/   searching which PEFT modules go where by iterative hybrid pruning (Yu et al., 2025)
"""
