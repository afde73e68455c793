"""Per-layer sensitivity (Hessian traces, eigenvalues, Fisher, empirical) and omega tables.

    sens = analyze(model, loss_fn, batches, method="hessian")
    table = cost_table(model, layers, sens, profile, w_bits=[2, 4, 8], a_bits=[8])
    table = calibrate_omega(model, table, loss_fn, batches, profile)   # measured where omega is off
"""

from mpsearch.sensitivity.analyze import analyze
from mpsearch.sensitivity.calibrate import CalibrationConfig, calibrate_omega
from mpsearch.sensitivity.config import EigenConfig, EmpiricalConfig, FisherConfig, HessianConfig
from mpsearch.sensitivity.methods import METHODS
from mpsearch.sensitivity.omega import cost_table

__all__ = ["METHODS", "CalibrationConfig", "EigenConfig", "EmpiricalConfig", "FisherConfig", "HessianConfig", "analyze", "calibrate_omega",
           "cost_table"]
