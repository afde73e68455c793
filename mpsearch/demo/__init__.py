"""Demo data and models: scikit-learn's digits and three small networks trained on them.

    from mpsearch.demo import load_demo, batches
    model, splits = load_demo("resnet_tiny")          # trains once (seconds), then cached
    acc = evaluate(model, batches(splits.test, 256))   # ~0.98

scikit-learn (``pip install 'mpsearch[demo]'``) is imported only when data is loaded.
"""

from mpsearch.demo.data import IMAGE_SIZES, SPLIT_SIZES, Batches, DigitsSplits, batches, load_digits_splits
from mpsearch.demo.models import DEMO_MODELS, get_model
from mpsearch.demo.train import (
    DEMO_TRAIN_CONFIGS,
    DemoRun,
    TrainConfig,
    cache_root,
    checkpoint_path,
    evaluate,
    load_demo,
    load_demo_run,
    train,
)

__all__ = [
    "Batches",
    "DEMO_MODELS",
    "DEMO_TRAIN_CONFIGS",
    "DemoRun",
    "DigitsSplits",
    "IMAGE_SIZES",
    "SPLIT_SIZES",
    "TrainConfig",
    "batches",
    "cache_root",
    "checkpoint_path",
    "evaluate",
    "get_model",
    "load_demo",
    "load_demo_run",
    "load_digits_splits",
    "train",
]
