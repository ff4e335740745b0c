"""PrunePEFT: search which PEFT modules go where (LoRA and serial adapters, layer by layer) by iterative hybrid
pruning of a supernet under a parameter budget; the searched plan trains from scratch through
`lightpeft.stages.train`.

  config.py       SearchConfig
  supernet.py     the candidate modules of every layer, and the plan a set of survivors makes
  criteria.py     Table 1's six criteria (a registry) and the round's running statistics
  partitions.py   depth blocks (4, or 1) x module kind; which criteria score each (warm-up union rule, table, file)
  combine.py      Eq. 1 (and the released code's block_dynamic, and random) -> removal order
  search.py       the warm-up and the rounds
  figures.py      which kinds survive in which layers, round by round
"""
