"""A small recipe (small_cnn, Fisher sensitivity, GAP-8) that the CLI tests vary per test."""

SMALL = {
    "version": 1, "name": "small", "seed": 0, "model": "small_cnn",
    "data": {"source": "digits", "batch_size": 128, "calib_batches": 2},
    "sensitivity": {"method": "fisher", "n_batches": 1, "settings": {"granularity": "per_batch"}},
    "hardware": {"profile": "gap8-pulp-nn", "w_bits": [2, 4, 8], "a_bits": [8]},
    "budgets": {"size_bytes": "uniform:w4a8"},
    "allocation": {"method": "ilp", "pareto": {"resource": "size_bytes", "n_points": 4}},
    "finetune": {"epochs": 1, "lr": 0.001, "batch_size": 128, "distill": {"temperature": 4.0, "alpha": 0.5}},
    "validation": {"split": "test", "integer": True},
}
