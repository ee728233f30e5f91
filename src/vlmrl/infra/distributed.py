"""Data parallelism over torch.distributed: which process this is, and the few collectives training needs.

A launcher (`torchrun`, `accelerate launch`) starts N copies of the program and tells each, in its
environment, who it is (RANK, WORLD_SIZE, LOCAL_RANK) and where to meet (MASTER_ADDR,
MASTER_PORT). `World.join()` joins them into one process group: gloo on CPU; on CUDA, NCCL with
gloo beside it for CPU tensors. Its collective timeout (`VLMRL_COLLECTIVE_TIMEOUT`, seconds) makes
the others stop within it when one rank dies or hangs, instead of waiting out NCCL's 30 minutes.
Without a launcher the world is one process, nothing here touches torch.distributed, and every
collective returns its input.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from vlmrl.infra.errors import RankError, RankFailure, UsageError, first_line

TIMEOUT_VARIABLE = "VLMRL_COLLECTIVE_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 300.0
"""Five minutes: far above any collective of a healthy run (they wait for the slowest rank's
generation), far below NCCL's 30 minutes, which a user watching a dead run would not wait out."""

T = TypeVar("T")


def _integer(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise RankError(f"the launcher set {name}={text!r}, which is not an integer") from None


def collective_timeout() -> datetime.timedelta:
    text = os.environ.get(TIMEOUT_VARIABLE)
    if text is None:
        return datetime.timedelta(seconds=DEFAULT_TIMEOUT_SECONDS)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise UsageError(f"{TIMEOUT_VARIABLE}={text!r} must be a positive number of seconds")
    return datetime.timedelta(seconds=seconds)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without a launcher)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run folder, logs and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @classmethod
    def from_environment(cls) -> World:
        """Who the launcher says this process is (rank 0 of 1 when no launcher started it)."""
        size = _integer("WORLD_SIZE", 1)
        rank, local_rank = _integer("RANK", 0), _integer("LOCAL_RANK", 0)
        if size < 1 or not 0 <= rank < size:
            raise RankError(f"the launcher set RANK={rank} and WORLD_SIZE={size}: a rank must be in 0..WORLD_SIZE-1")
        return cls(rank, size, local_rank)

    @classmethod
    def join(cls, device: str = "auto") -> World:
        """This process's world, its process group joined when there is more than one process.
        `device` is the run's (auto, cpu, cuda, cuda:N): CUDA runs use NCCL and this rank's GPU."""
        world = cls.from_environment()
        if not world.distributed:
            return world
        if dist.is_initialized():
            return world
        cuda = device != "cpu" and torch.cuda.is_available()
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RankError(f"device {device!r} was asked for, but no GPU is visible to rank {world.rank}")
        if cuda:
            if world.local_rank >= torch.cuda.device_count():
                raise RankError(
                    f"rank {world.rank} is local rank {world.local_rank}, but this machine has "
                    f"{torch.cuda.device_count()} GPU(s): start at most that many processes per machine"
                )
            torch.cuda.set_device(world.local_rank)
        # on GPUs, NCCL for CUDA tensors and gloo for the few CPU ones (buffer statistics, gathers)
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=collective_timeout())
        return world

    def seed(self, seed: int) -> int:
        """This rank's seed for a generator every rank has (sampling, mini-batch order): the run's
        seed itself in one process, else one derived from (seed, rank), different on every rank."""
        if not self.distributed:
            return seed
        return int(np.random.SeedSequence([seed, 0xD15, self.rank]).generate_state(1)[0])

    def device(self, device: str) -> str | None:
        """The device this rank's model goes on: its own GPU under a launcher, else what the run asks."""
        if self.distributed and device in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return None if device == "auto" else device

    # ---------------------------------------------------------------- collectives
    def _call(self, what: str, function: Any, *args: Any) -> Any:
        try:
            return function(*args)
        except (RuntimeError, dist.DistBackendError) as error:  # a peer died or timed out
            raise RankFailure(
                f"rank {self.rank} gave up {what}: another rank died or hangs (the launcher's report names it; "
                f"{first_line(error)})"
            ) from None

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over ranks (a copy; the input is left alone)."""
        total = tensor.detach().clone()
        if self.distributed:
            self._call("a sum over ranks", dist.all_reduce, total)
        return total

    def mean_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace each gradient with its mean over ranks (each rank's loss was a mean over its share)."""
        self._reduce_gradients(parameters, mean=True)

    def sum_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace each gradient with its sum over ranks (each rank's loss was its part of one sum)."""
        self._reduce_gradients(parameters, mean=False)

    def _reduce_gradients(self, parameters: Iterable[torch.nn.Parameter], mean: bool) -> None:
        """One flat all-reduce; a parameter without a gradient counts as zeros, so every rank reduces
        the same tensors."""
        if not self.distributed:
            return
        params = list(parameters)
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        self._call("adding up gradients", dist.all_reduce, flat)
        if mean:
            flat /= self.size
        offset = 0
        for p in params:
            count = p.grad.numel()
            p.grad.copy_(flat[offset : offset + count].view_as(p.grad))
            offset += count

    def any(self, flag: bool) -> bool:
        """Whether `flag` is set on any rank (a Ctrl-C that reached one of them, say)."""
        if not self.distributed:
            return flag
        return bool(self.sum(torch.tensor([int(flag)]))[0] > 0)

    def copy_from_main(self, tensors: Iterable[torch.Tensor]) -> None:
        """Overwrite each tensor with rank 0's (in place): every rank starts from the same weights."""
        if not self.distributed:
            return
        with torch.no_grad():
            for tensor in tensors:
                self._call("copying rank 0's weights", dist.broadcast, tensor.data, 0)

    def gather(self, value: T) -> list[T]:
        """Every rank's `value` (JSON-like, picklable by torch between our own processes), in rank order."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.size
        self._call("gathering from every rank", dist.all_gather_object, gathered, value)
        return gathered

    def broadcast(self, value: T) -> T:
        """Rank 0's `value`, on every rank."""
        if not self.distributed:
            return value
        box = [value]
        self._call("hearing from rank 0", dist.broadcast_object_list, box, 0)
        return box[0]

    def from_main(self, work: Callable[[], T]) -> T:
        """`work()` done by rank 0 alone (reading which checkpoint to resume, say) and its result sent
        to every rank; a UsageError there is raised on every rank, with the same line."""
        if not self.distributed:
            return work()
        outcome: tuple[bool, Any] = (True, None)
        if self.is_main:
            try:
                outcome = (True, work())
            except UsageError as error:
                outcome = (False, str(error))
        ok, value = self.broadcast(outcome)
        if not ok:
            raise UsageError(value)
        return value

    @contextlib.contextmanager
    def on_main(self, context: Callable[[], contextlib.AbstractContextManager]) -> Iterator[None]:
        """Enter `context()` on rank 0 alone (the run folder, which one process holds) for the whole
        block; every rank learns whether it could be entered, and a refusal is raised on every rank."""
        if not self.distributed:
            with context():
                yield
            return
        if not self.is_main:
            self.from_main(lambda: None)
            yield
            return
        with contextlib.ExitStack() as stack:
            self.from_main(lambda: stack.enter_context(context()) and None)
            yield

    def barrier(self) -> None:
        if self.distributed:
            self._call("waiting for every rank", dist.barrier)

    def share(self, total: int, what: str) -> int:
        """This rank's equal share of `total` (environments, say); an uneven split is one line."""
        if total % self.size:
            raise UsageError(
                f"{what} ({total}) must be a multiple of the number of processes ({self.size}): each rank "
                "takes an equal share"
            )
        return total // self.size


def leave_world() -> None:
    """Leave the process group, if this process joined one (at the command's end)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


ALONE = World()
"""The world of a process no launcher started: rank 0 of 1."""


def split_evenly(items: Sequence[T], world: World) -> Sequence[T]:
    """This rank's contiguous part of `items`; the parts differ in length by at most one, in rank order."""
    size, extra = divmod(len(items), world.size)
    start = world.rank * size + min(world.rank, extra)
    return items[start : start + size + (world.rank < extra)]
