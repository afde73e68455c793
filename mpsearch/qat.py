"""Quantization-aware fine-tuning (QAT) of a fake-quant model, as HAWQ-V3 does after allocation.

    qmodel = quantize(model, plan, calib_batches, profile=profile)
    finetune_(qmodel, train_batches, FinetuneConfig(epochs=3, lr=1e-3),
              distill=DistillConfig(teacher=model, temperature=4.0, alpha=0.5))

Gradients pass the rounding by the straight-through estimator already built into
:func:`mpsearch.quant.fake_quantize` (identity inside the clip range, zero outside). What is
trained: the float (BN-folded) weights and biases of the quantized layers, and any other float
parameter of the model. What is not: activation scales and zero points (frozen at calibration,
so the integer program built afterwards uses exactly the ranges the model was trained with).

Weight scales: :class:`~mpsearch.quant.WeightQuant` fixes its scales when it is built. As the
weights move, a fixed scale would clip them; so before every epoch after the first the weight
scales are re-derived from the current weights with the same calibrator (min-max by default).
Within an epoch they stay fixed, so each step sees one well-defined quantizer. After the last
epoch they are not re-derived: the model that is returned is exactly the one that was trained.

Randomness: ``config.seed`` decides everything random in fine-tuning. Given a sequence of
``(inputs, labels)`` batches, :func:`finetune_` pools the examples once and, every epoch, deals
them into batches in a new order drawn from (seed, epoch) (:func:`epoch_order`); torch's global
RNG (dropout, any stochastic layer) is seeded with the same seed inside a fork, so the caller's
RNG state is untouched. The same seed, data, model and thread count give the same weights bit
for bit. A callable ``epoch -> batches`` is used as given (the caller owns the order, e.g. a
DataLoader with its own sampler).

Distillation loss (Hinton et al.): ``alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * CE(z_s, y)``
with ``p = softmax(z / T)`` of the teacher ``t`` (the float model) and the student ``s``; the
``T^2`` keeps the soft-target gradients on the scale of the hard-label ones.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mpsearch.core.checks import check_choice, check_int, check_number
from mpsearch.errors import rule_error
from mpsearch.quant.learned import LEARNED_RANGES, commit_learned_ranges_, enable_learned_ranges_


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation from a teacher (usually the float model).

    Attributes:
        teacher: the model giving soft targets (run in eval mode, no gradients).
        temperature: softmax temperature T (> 0) of both soft distributions.
        alpha: weight of the soft loss in [0, 1]; ``1 - alpha`` weighs cross-entropy.
    """

    teacher: nn.Module
    temperature: float = 4.0
    alpha: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.teacher, nn.Module):
            raise rule_error("DistillConfig", "teacher", "a torch.nn.Module", type(self.teacher).__name__)
        check_number(self.temperature, "DistillConfig", "temperature", min=0, min_exclusive=True)
        check_number(self.alpha, "DistillConfig", "alpha", min=0, max=1)


@dataclass(frozen=True)
class FinetuneConfig:
    """Options of :func:`finetune_`.

    Attributes:
        epochs: passes over the training batches (0 returns the model unchanged).
        lr: peak learning rate of Adam; cosine decay to 0 over all steps.
        weight_decay: Adam's L2 penalty.
        seed: draws the example order of every epoch and seeds torch's RNG inside a fork
            (the caller's RNG state is untouched); see the module docstring.
        batch_size: examples per step when ``finetune_`` re-deals a sequence of batches;
            None keeps the size of the first given batch.
        rederive_weight_scales: re-derive weight scales from the weights before each epoch
            after the first (see the module docstring).
        learned_ranges: "none" (default: scales fixed as described above), "lsq" (weight and
            activation scales trained, LSQ), "lsq+" (LSQ and trained activation zero points) or
            "pact" (trained upper clip of each static activation). Learned values are written
            back into the quantizers' buffers after the last epoch (:mod:`mpsearch.quant.learned`);
            weight scales are then not re-derived between epochs.
        n_threads: intra-op threads while training (restored after); None leaves them.
        progress: optional callback ``progress({"epoch": i, "n_epochs": n, "loss": x})``.
    """

    epochs: int = 3
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    batch_size: int | None = None
    rederive_weight_scales: bool = True
    learned_ranges: str = "none"
    n_threads: int | None = None
    progress: Callable[[dict[str, Any]], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        w = "FinetuneConfig"
        check_int(self.epochs, w, "epochs", min=0)
        check_number(self.lr, w, "lr", min=0, min_exclusive=True)
        check_number(self.weight_decay, w, "weight_decay", min=0)
        check_int(self.seed, w, "seed", min=0)
        check_choice(self.learned_ranges, w, "learned_ranges", LEARNED_RANGES)
        check_int(self.batch_size, w, "batch_size", min=1, allow_none=True)


def distill_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, temperature: float,
                 alpha: float) -> Tensor:
    """``alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) * CE(z_s, y)``.

    Args:
        student_logits: ``(N, C)``.
        teacher_logits: ``(N, C)`` (no gradient is taken through them).
        targets: ``(N,)`` class indices.
        temperature: T > 0.
        alpha: soft-loss weight in [0, 1].

    Returns:
        The scalar mean loss over the batch (KL summed over classes, averaged over examples).
    """
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    p_t = F.softmax(teacher_logits.detach() / t, dim=-1)
    kl = F.kl_div(log_p_s, p_t, reduction="batchmean")
    ce = F.cross_entropy(student_logits, targets)
    return alpha * t * t * kl + (1.0 - alpha) * ce


def rederive_weight_scales_(qmodel: nn.Module, calibrator_options: dict[str, Any] | None = None) -> int:
    """Rebuild every layer's ``weight_quant`` from its current weight (same spec and calibrator).

    Returns:
        The number of layers updated.
    """
    from mpsearch.quant import QuantConv1d, QuantConv2d, QuantLinear, WeightQuant

    n = 0
    for m in qmodel.modules():
        if isinstance(m, (QuantConv1d, QuantConv2d, QuantLinear)):
            old = m.weight_quant
            new = WeightQuant(m.weight.detach(), old.spec, old.calibrator_name, calibrator_options)
            old.scale = new.scale.to(old.scale.device)  # buffers: replace in place on the same module
            old.zero_point = new.zero_point.to(old.zero_point.device)
            n += 1
    return n


def _inputs_targets(batch: Any, index: int) -> tuple[Tensor, Tensor]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], Tensor):
        return batch[0], batch[1]
    raise rule_error("finetune_", f"batches[{index}]", "an (inputs, labels) pair of tensors", type(batch).__name__)


def _pool(batches: Iterable[Any]) -> tuple[Tensor, Tensor, int]:
    """All examples of ``batches`` as two tensors, and the size of the first batch."""
    xs, ys = [], []
    for i, batch in enumerate(batches):
        x, y = _inputs_targets(batch, i)
        xs.append(x)
        ys.append(y)
    if not xs:
        raise rule_error("finetune_", "batches", "at least one (inputs, labels) batch", [])
    return torch.cat(xs), torch.cat(ys), len(ys[0])


def epoch_order(n_examples: int, seed: int, epoch: int) -> Tensor:
    """The permutation of ``range(n_examples)`` that epoch ``epoch`` of a run seeded ``seed`` visits.

    Each (seed, epoch) pair gets its own generator, seeded through ``numpy.random.SeedSequence``
    so that nearby pairs such as (0, 1) and (1, 0) give unrelated streams.
    """
    state = int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> np.uint64(1))
    return torch.randperm(n_examples, generator=torch.Generator().manual_seed(state))


def shuffled_batches(x: Tensor, y: Tensor, batch_size: int, seed: int, epoch: int) -> list[tuple[Tensor, Tensor]]:
    """``(x, y)`` dealt into batches of ``batch_size`` (the last may be short) in :func:`epoch_order`."""
    return [(x[sel], y[sel]) for sel in epoch_order(len(y), seed, epoch).split(batch_size)]


def _epoch_source(batches: Iterable[Any] | Callable[[int], Iterable[Any]], config: FinetuneConfig
                  ) -> tuple[Callable[[int], Iterable[Any]], int]:
    """``(epoch -> batches, steps per epoch)``: the caller's function, or the pooled batches re-dealt."""
    if callable(batches):
        return batches, sum(1 for _ in batches(0))
    x_all, y_all, first_size = _pool(batches)
    size = config.batch_size or first_size
    per_epoch = functools.partial(shuffled_batches, x_all, y_all, size, config.seed)  # epoch -> batches
    return per_epoch, -(-len(y_all) // size)


def _per_prediction(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Sequence outputs ``(B, T, V)`` with targets ``(B, T)`` as ``(B*T, V)`` and ``(B*T,)``: a
    language model's loss is the mean over every predicted token; ``(N, C)`` passes unchanged."""
    if logits.dim() > 2:
        return logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    return logits, targets


def _train_epoch(qmodel: nn.Module, batches: Iterable[Any], opt: torch.optim.Optimizer, sched: Any,
                 distill: DistillConfig | None) -> tuple[float, int, int, int]:
    """One pass over ``batches``: ``(sum of losses over examples, correct, examples, steps)``."""
    loss_sum, n_correct, n_seen, n_steps = 0.0, 0, 0, 0
    for i, batch in enumerate(batches):
        x, y = _inputs_targets(batch, i)
        opt.zero_grad(set_to_none=True)
        logits, y = _per_prediction(qmodel(x), y)
        if distill is not None:
            with torch.no_grad():
                teacher_logits, _ = _per_prediction(distill.teacher(x), y)
            loss = distill_loss(logits, teacher_logits, y, distill.temperature, distill.alpha)
        else:
            loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += float(loss.detach()) * len(y)  # batch mean -> sum
        n_correct += int((logits.detach().argmax(-1) == y).sum())
        n_seen += len(y)
        n_steps += 1
    return loss_sum, n_correct, n_seen, n_steps


def finetune_(qmodel: nn.Module, batches: Iterable[Any] | Callable[[int], Iterable[Any]],
              config: FinetuneConfig | None = None, distill: DistillConfig | None = None) -> dict[str, Any]:
    """Fine-tune the fake-quant ``qmodel`` in place with the straight-through estimator.

    Args:
        qmodel: from :func:`mpsearch.quant.quantize` (activation ranges frozen).
        batches: ``(inputs, labels)`` batches (re-dealt every epoch in an order drawn from
            ``config.seed``), or a function ``epoch -> batches`` used as given.
        config: :class:`FinetuneConfig`; default 3 epochs at lr 1e-3.
        distill: soft targets from a teacher; None trains on hard labels only.

    Returns:
        ``{"train_loss": [mean loss per epoch], "train_accuracy": [per epoch], "n_steps": int}``.
        The model is left in eval mode.
    """
    config = config or FinetuneConfig()
    if not isinstance(qmodel, nn.Module):
        raise rule_error("finetune_", "qmodel", "a torch.nn.Module", type(qmodel).__name__)
    record: dict[str, Any] = {"train_loss": [], "train_accuracy": [], "n_steps": 0}
    if config.epochs == 0:
        qmodel.eval()
        return record
    per_epoch, n_steps_per_epoch = _epoch_source(batches, config)
    learned = enable_learned_ranges_(qmodel, config.learned_ranges)  # 0 unless an option asks
    if learned:
        record["n_learned_ranges"] = learned
    params = [p for p in qmodel.parameters() if p.requires_grad]
    previous_threads = torch.get_num_threads()
    if config.n_threads is not None:
        torch.set_num_threads(config.n_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, config.epochs * n_steps_per_epoch))
            if distill is not None:
                distill.teacher.eval()
            for epoch in range(config.epochs):
                if epoch > 0 and config.rederive_weight_scales and not learned:
                    rederive_weight_scales_(qmodel)
                qmodel.train()
                loss_sum, n_correct, n_seen, n_steps = _train_epoch(qmodel, per_epoch(epoch), opt, sched, distill)
                record["n_steps"] += n_steps
                record["train_loss"].append(loss_sum / max(n_seen, 1))
                record["train_accuracy"].append(n_correct / max(n_seen, 1))
                if config.progress is not None:
                    config.progress({"epoch": epoch + 1, "n_epochs": config.epochs,
                                     "loss": record["train_loss"][-1]})
    finally:
        torch.set_num_threads(previous_threads)
        commit_learned_ranges_(qmodel)
        qmodel.eval()
    return record
