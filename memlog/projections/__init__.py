"""Pure folds over the event log (edit ledger, fact health, cycles) and the weight projection."""
