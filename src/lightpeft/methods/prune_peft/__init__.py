"""PrunePEFT (Yu et al., 2025): insert candidate PEFT modules everywhere, train short rounds, score every module
with its partition's criteria, remove the weakest, repeat to a budget; the found configuration is a `Plan` that
trains through `lightpeft.stages.train`. Not implemented yet.
"""
