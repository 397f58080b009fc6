"""Sweeps: notebook 01 run over a parameter grid, one run folder per combination (docs/sweeps.md).

spec (the grid, checked before anything runs), records (a run's sweep_run.json and claim),
local (running here), on_ray (running as Ray tasks), results (results.csv), scoring (--eval).
"""
