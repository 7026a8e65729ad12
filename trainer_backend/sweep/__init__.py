"""Sweeps: a search for good settings as a job of its own (the `sweep:` section of a job spec, spec_sweep.py).

    driver.py     the sweep job's process: Optuna asks, each trial is a job, evaluations go to the pruner
    space.py      the search space as Optuna distributions; each trial's spec; the promoted run's spec
    objective.py  what a trial is judged by, while it trains and at its end
    budget.py     the live HF Jobs price, the estimate before the start, the spend while it runs
    record.py     sweep.json: what the Jobs tab, /sweep_status and the CLI read
    summary.py    the study and the trials' jobs -> sweep.json; parameter importances
    actions.py    start, status, promote
"""
