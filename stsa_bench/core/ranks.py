"""Sharded runs under torchrun: this process's rank, its device, its share of the clips, and barriers.

torchrun (`torch.distributed.run`) sets RANK, WORLD_SIZE and LOCAL_RANK; without them a run is rank 0 of
1 and nothing here touches torch.distributed. With them, a gloo process group carries the barriers (the
ranks exchange no tensors: each writes its own rows and partials, rank 0 merges once all are done).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import heapq
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

BARRIER_TIMEOUT = _dt.timedelta(hours=72)
"""How long a finished rank waits for the slowest one (gloo's default, 30 min, is shorter than a long shard)."""


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world_size > 1

    def device(self, configured: str) -> str:
        """`auto` -> `cuda:LOCAL_RANK` when CUDA is there and the run is sharded (else as resolve_device). With fewer
        visible GPUs than local ranks (a launcher that gives each process its own GPU shows it as cuda:0), the
        ranks take them in turn: cuda:(LOCAL_RANK mod the number visible)."""
        from .devices import resolve_device

        device = resolve_device(configured)
        if self.sharded and configured == "auto" and device == "cuda":
            import torch

            return f"cuda:{self.local_rank % max(1, torch.cuda.device_count())}"
        return device

    def barrier(self) -> None:
        if self.sharded:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order (a picklable object; a barrier too)."""
        if not self.sharded:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def agree(rank: Rank, error: BaseException | None) -> None:
    """After a setup step that may fail on some ranks only (a busy run folder, a device one node lacks): raise on
    every rank when one failed, instead of leaving the others at the next barrier until its timeout. The failed
    rank raises its own error; the others a ConfigError naming it."""
    reasons = rank.gather(None if error is None else str(error)) if rank.sharded else [None]
    if error is not None:
        raise error
    failed = next(((r, why) for r, why in enumerate(reasons) if why), None)
    if failed:
        from .errors import ConfigError

        raise ConfigError(f"rank {failed[0]} could not start: {failed[1]}")


@contextlib.contextmanager
def together(rank: Rank) -> Iterator[None]:
    """A setup block that every rank passes or fails together: an exception inside it is gathered (`agree`), then
    raised on every rank."""
    error = None
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every rank learns of it, then it is raised by agree
        error = exc
    agree(rank, error)


def current_rank() -> Rank:
    """This process's rank from torchrun's environment; the gloo group is joined on first call."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Rank()
    rank = Rank(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return rank


def release() -> None:
    """Leave the process group, if this process joined one. Without it a rank that finished early could
    abort at exit ("terminate called without an active exception": gloo's threads still joinable when the
    interpreter tears down) and torchrun would fail the whole job."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(items: Sequence[T], world_size: int, cost: Callable[[T], float], key: Callable[[T], str]) -> list[list[T]]:
    """Deterministic balanced assignment: items by decreasing cost (ties by key) each go to the rank
    with the least total cost so far (ties to the lower rank); each rank's items keep their input order."""
    order = {key(x): i for i, x in enumerate(items)}
    heap = [(0.0, r) for r in range(world_size)]
    shards: list[list[T]] = [[] for _ in range(world_size)]
    for x in sorted(items, key=lambda x: (-cost(x), key(x))):
        load, r = heapq.heappop(heap)
        shards[r].append(x)
        heapq.heappush(heap, (load + cost(x), r))
    return [sorted(s, key=lambda x: order[key(x)]) for s in shards]
