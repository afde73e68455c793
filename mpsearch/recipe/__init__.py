"""Recipes: one YAML file (``version: 1``) that describes a whole mpsearch run.

    recipe = load_recipe("recipes/demo.yaml")      # strict: every key and value checked here
    result = run_recipe(recipe)                     # mpsearch.pipeline

Every section is a frozen dataclass checked when built. :func:`load_recipe` also does every
check that is cheap, so a bad recipe stops before any heavy work: the profile loads, the
import paths import, the budgets parse, the candidate bits are allowed by the profile, the
sensitivity settings build their config. Messages name the file, the dotted key, the rule
and the value (``"demo.yaml: hardware.w_bits must be ..., but got [3]"``).

Schema (defaults in brackets)::

    version: 1
    name: demo                      # [file stem] results go to <output.dir>/<name>/
    seed: 0                         # [0] seeds sensitivity probes, explorers, QAT data order
    model: resnet_tiny              # a demo model name, or "package.module:function" -> nn.Module
    model_kwargs: {}                # keyword arguments for an imported model function
    data:
      source: digits                # [digits] or "package.module:function" -> {"train","val","test"}
      batch_size: 128               # [128] images per batch
      calib_batches: 4              # [4] batches for calibration and the activation term
    sensitivity:
      method: hessian               # [hessian] hessian | eigen | fisher | empirical
      n_batches: 2                  # [2] batches of the train split it reads
      settings: {max_probes: 32}    # fields of the method's config (HessianConfig, ...); with several
                                    # candidate a_bits, hessian's activations defaults to true
      calibrate: true               # [true] measure omega where the second-order figure is off
      calibrate_factor: 2.0         # [2.0] ... by more than this ratio (lowest bits first)
      calibrate_max_evaluations: 64 # [64] at most this many one-layer measurements
    hardware:
      profile: gap8-pulp-nn         # shipped name or path to a profile YAML
      w_bits: [2, 4, 8]             # [all the profile runs]
      a_bits: [8]                   # [all the profile runs]
    budgets:                        # resource -> limit; each may be absolute (120k), relative
      size_bytes: uniform:w4a8      # (50%: of the way from smallest to largest total) or the
                                    # total of a uniform plan (uniform:w4a8)
    allocation:
      method: ilp                   # [ilp] ilp | optuna | rl
      solver: cbc                   # [cbc] ILP engine (cbc | highs)
      gap_rel: 0.0001               # [1e-4] stop once proven within this relative gap; 0: prove the optimum
      n_trials: 200                 # [200] optuna trials / rl episodes
      pareto: {resource: size_bytes, n_points: 12}   # [first budget's resource, 12]; null: no sweep
      k_best: 8                     # [8] ilp: of the 8 best plans by omega keep the one with the lowest
                                    # loss on the val split (1: the ILP's plan as is)
      guard: true                   # [true] score the plan against uniform and greedy plans within
                                    # the budgets on the val split; a better baseline wins (plan meta says)
    finetune:                       # [null: no QAT]
      epochs: 3
      lr: 0.001
      batch_size: 64
      distill: {temperature: 4.0, alpha: 0.5}     # [null: hard labels only]
      seed: 0                       # [the recipe's seed] order of the training examples
    validation:
      split: test                   # [test] split used for accuracy and integer validation
      integer: true                 # [true] run the integer executor and export it
    output:
      dir: results                  # [results] relative to the working directory
"""

from mpsearch.allocation import parse_uniform  # budget syntax lives in allocation/budgets.py
from mpsearch.recipe.checks import check_recipe, sensitivity_config
from mpsearch.recipe.load import load_recipe, recipe_from_dict
from mpsearch.recipe.specs import (ALLOCATION_METHODS, DATA_SPLITS, RECIPE_VERSION, AllocationSpec, DataSpec, DistillSpec,
                                   FinetuneSpec, HardwareSpec, ParetoSpec, Recipe, SensitivitySpec, ValidationSpec,
                                   import_object, is_import_path)

__all__ = [
    "ALLOCATION_METHODS", "DATA_SPLITS", "RECIPE_VERSION", "AllocationSpec", "DataSpec", "DistillSpec", "FinetuneSpec",
    "HardwareSpec", "ParetoSpec", "Recipe", "SensitivitySpec", "ValidationSpec", "check_recipe", "import_object",
    "is_import_path", "load_recipe", "parse_uniform", "recipe_from_dict", "sensitivity_config",
]
