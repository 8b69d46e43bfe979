"""Scaling-law sweeps: a grid of ``hma-zoo fit`` runs on a job engine (local processes or SLURM via submitit), one
table of their metrics, and fitted laws ``L = a * x^-b + c`` in parameters, data and compute (``hma-zoo sweep``)."""

from hma_zoo.sweep.laws import IllPosedFitError, PowerLawFit, analyse, fit_power_law, frontier
from hma_zoo.sweep.spec import Point, SweepSpec, load_sweep

__all__ = ["IllPosedFitError", "Point", "PowerLawFit", "SweepSpec", "analyse", "fit_power_law", "frontier",
           "load_sweep"]
