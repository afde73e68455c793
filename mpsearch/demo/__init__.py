"""Demo data and models: scikit-learn's digits and three small networks trained on them, and a
byte-level GPT trained on Python's own standard-library source.

    from mpsearch.demo import load_demo, batches
    model, splits = load_demo("resnet_tiny")          # trains once (seconds), then cached
    acc = evaluate(model, batches(splits.test, 256))   # ~0.98

    from mpsearch.demo import load_demo_lm, bits_per_byte, text_batches
    lm, text = load_demo_lm("gpt_tiny")               # trains once (minutes), then cached
    bpb = bits_per_byte(lm, text_batches(text.test, context=128, batch_size=64))

scikit-learn (``pip install 'mpsearch[demo]'``) is imported only when data is loaded.
"""

from mpsearch.demo.data import IMAGE_SIZES, SPLIT_SIZES, Batches, DigitsSplits, batches, load_digits_splits
from mpsearch.demo.lm import GPT, GPTConfig, bits_per_byte, lm_loss
from mpsearch.demo.lm_train import (
    DEMO_LM_MODELS,
    DEMO_LM_TRAIN_CONFIGS,
    LMDemoRun,
    LMTrainConfig,
    get_lm_model,
    lm_checkpoint_path,
    load_demo_lm,
    load_demo_lm_run,
    train_lm,
)
from mpsearch.demo.models import DEMO_MODELS, get_model
from mpsearch.demo.text import TEXT_FILES, VOCAB_SIZE, TextBatches, TextSplits, load_text_splits, text_batches, windows
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
    "DEMO_LM_MODELS",
    "DEMO_LM_TRAIN_CONFIGS",
    "DEMO_MODELS",
    "DEMO_TRAIN_CONFIGS",
    "DemoRun",
    "DigitsSplits",
    "GPT",
    "GPTConfig",
    "IMAGE_SIZES",
    "LMDemoRun",
    "LMTrainConfig",
    "SPLIT_SIZES",
    "TEXT_FILES",
    "TextBatches",
    "TextSplits",
    "TrainConfig",
    "VOCAB_SIZE",
    "batches",
    "bits_per_byte",
    "cache_root",
    "checkpoint_path",
    "evaluate",
    "get_lm_model",
    "get_model",
    "lm_checkpoint_path",
    "lm_loss",
    "load_demo",
    "load_demo_lm",
    "load_demo_lm_run",
    "load_demo_run",
    "load_digits_splits",
    "load_text_splits",
    "text_batches",
    "train",
    "train_lm",
    "windows",
]
