"""Splitting probes across ``torch.distributed`` ranks and summing their samples.

Rank ``r`` of ``W`` evaluates the probe indices ``i`` with ``i % W == r`` of each round and
writes zeros for the others; a SUM all-reduce then gives every rank all samples, the same
ones a single process computes with the same seed and round size.
"""

from __future__ import annotations

import torch


class Comm:
    """Rank, world size and all-reduce; a single process when not distributed."""

    def __init__(self, distributed: bool) -> None:
        self.rank, self.world = 0, 1
        self._dist = None
        if distributed:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()):
                from mpsearch.errors import ConfigError

                raise ConfigError("analyze: distributed must be used with an initialised torch.distributed "
                                  "process group (call torch.distributed.init_process_group first), but none is")
            self._dist = dist
            self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def mine(self, probe_index: int) -> bool:
        """Whether this rank evaluates ``probe_index``."""
        return probe_index % self.world == self.rank

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over ranks in place (NCCL needs it on the GPU, gloo on any device)."""
        if self._dist is not None and self.world > 1:
            if self._dist.get_backend() == "nccl" and not t.is_cuda:
                moved = t.cuda()
                self._dist.all_reduce(moved)
                t.copy_(moved.cpu())
            else:
                self._dist.all_reduce(t)
        return t
