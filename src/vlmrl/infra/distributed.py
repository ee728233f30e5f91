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

import atexit
import contextlib
import datetime
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

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
        """Replace each gradient with its mean over ranks (each rank's loss was a mean over its share),
        in one flat all-reduce; a parameter without a gradient counts as zeros, so every rank reduces
        the same tensors. Sharded parameters (FSDP2's DTensors) are left alone: their gradients
        leave backward already averaged over the ranks."""
        if not self.distributed:
            return
        params = [p for p in parameters if not isinstance(p, DTensor)]
        if not params:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        self._call("adding up gradients", dist.all_reduce, flat)
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


def leave_world() -> bool:
    """Leave the process group, if this process joined one (at the command's end); whether it had."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.destroy_process_group()
    return True


def end_process(code: int) -> NoReturn:
    """End a process that was one of several with `code`, without the interpreter's finalization.

    Why: a gloo worker thread drops its last reference to a finished collective (an FSDP all-gather's
    tensors, say) a moment after the collective has returned. When that moment falls inside the
    interpreter's finalization, the tensor's Python side can no longer take the GIL, the thread is
    unwound through a destructor, and a process whose work was all done aborts ("terminate called
    without an active exception", SIGABRT), which the launcher reports as a failed rank (6 of 300
    2-process FSDP runs on 2 cores; PyTorch's own fix, pytorch/pytorch#179291, was abandoned).
    What a normal exit does for a program is done first: other threads joined (a checkpoint or
    TensorBoard writer), atexit handlers run (logging's flush among them), streams flushed."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


ALONE = World()
"""The world of a process no launcher started: rank 0 of 1."""

SHARDINGS = ("auto", "replicate", "fsdp", "deepspeed")


@dataclass(frozen=True)
class Sharding:
    """How the ranks hold the model and its optimizer.
    - `replicate`: each rank a whole copy, gradients all-reduced (DDP's layout).
    - `fsdp`: FSDP2, each rank 1/N of the weights, gradients and optimizer state;
      `reshard_after_forward=False` keeps gathered weights until backward (ZeRO-2's trade: more
      memory, less communication); `offload` keeps the shards and optimizer state in CPU memory.
    - `deepspeed`: DeepSpeed's ZeRO stage `zero_stage` (1 or 2): whole weights on every rank,
      Adam's moments (and at stage 2 the gradients) partitioned; `offload` runs the optimizer
      on its partitions in CPU memory (the paper's ZeRO-2 with optimizer offload)."""

    kind: str = "replicate"
    reshard_after_forward: bool = True
    offload: bool = False
    zero_stage: int = 0

    @classmethod
    def resolve(cls, asked: str, world: World) -> Sharding:
        """The layout of this run: the config's `sharding`, where `auto` takes the accelerate
        config's (`accelerate launch --config_file`), else replicate. One process is always whole."""
        launched = cls.from_launcher()
        if asked != "auto" and launched is not None and launched.kind != asked:
            raise UsageError(
                f"the accelerate config asks for {launched.kind} but the run's config says sharding: {asked}; "
                "drop one of them (sharding: auto follows the accelerate config)"
            )
        if not world.distributed:
            return cls()
        if launched is not None:
            return launched
        if asked == "fsdp":
            return cls("fsdp")
        if asked == "deepspeed":  # the paper's: ZeRO-2, the optimizer in CPU memory
            return cls("deepspeed", offload=True, zero_stage=2)
        return cls()

    def describe(self, world: World) -> str:
        """One line for the start of a run of more than one process."""
        if self.kind == "replicate":
            return f"{world.size} processes, each with a whole copy of the model"
        if self.kind == "deepspeed":
            where = ", the optimizer in CPU memory" if self.offload else ""
            engine = f"DeepSpeed ZeRO-{self.zero_stage}{where}"
            return f"{world.size} processes, each with a whole copy of the model ({engine})"
        kept = "" if self.reshard_after_forward else ", gathered weights kept until backward"
        offload = ", shards in CPU memory" if self.offload else ""
        return f"{world.size} processes, each with 1/{world.size} of the model (FSDP2{kept}{offload})"

    @classmethod
    def from_launcher(cls) -> Sharding | None:
        """What an accelerate config file asked for, from the variables `accelerate launch` sets."""
        if _flag("ACCELERATE_USE_DEEPSPEED"):
            return cls._deepspeed_from_launcher()
        if not _flag("ACCELERATE_USE_FSDP"):
            return None
        version = os.environ.get("FSDP_VERSION", "1")
        if version != "2":
            raise UsageError(f"the accelerate config asks for FSDP{version}; vlmrl runs FSDP2 (fsdp_version: 2)")
        return cls("fsdp", _flag("FSDP_RESHARD_AFTER_FORWARD", True), _flag("FSDP_OFFLOAD_PARAMS"))

    @classmethod
    def _deepspeed_from_launcher(cls) -> Sharding:
        """The ZeRO stage and where the optimizer runs, from the accelerate config's DeepSpeed part
        (inline, or its `deepspeed_config_file`); vlmrl sets the batch sizes, the clip and the
        precision itself, from the run's config."""
        path = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
        if path:
            try:
                zero = json.loads(Path(path).read_text()).get("zero_optimization", {})
            except (OSError, ValueError, AttributeError) as error:
                raise UsageError(f"DeepSpeed config file {path!r}: {first_line(error)}") from None
            stage, offload = zero.get("stage", 0), zero.get("offload_optimizer", {}).get("device", "none")
            params = zero.get("offload_param", {}).get("device", "none")
        else:
            stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
            offload = os.environ.get("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "none")
            params = os.environ.get("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "none")
        if str(stage) not in ("1", "2"):
            raise UsageError(
                f"the accelerate config asks for DeepSpeed ZeRO stage {stage}; vlmrl runs stages 1 and 2 "
                "(for weights sharded as ZeRO-3 does, use FSDP2: accelerate/fsdp2)"
            )
        if str(offload) not in ("none", "cpu") or str(params) != "none":
            raise UsageError(
                f"the accelerate config offloads DeepSpeed's optimizer to {offload!r} and its weights to {params!r}; "
                "vlmrl offloads the optimizer to cpu or nowhere, and the weights nowhere"
            )
        return cls("deepspeed", offload=offload == "cpu", zero_stage=int(stage))


WHOLE = Sharding()
"""A whole copy of the model on every rank: one process's layout, and the default."""


def _flag(name: str, default: bool = False) -> bool:
    """A true/false variable set by a launcher."""
    text = os.environ.get(name)
    if text is None:
        return default
    if text.strip().lower() not in ("1", "0", "true", "false", "yes", "no"):
        raise UsageError(f"the launcher set {name}={text!r}; true or false was expected")
    return text.strip().lower() in ("1", "true", "yes")


def split_evenly(items: Sequence[T], world: World) -> Sequence[T]:
    """This rank's contiguous part of `items`; the parts differ in length by at most one, in rank order."""
    size, extra = divmod(len(items), world.size)
    start = world.rank * size + min(world.rank, extra)
    return items[start : start + size + (world.rank < extra)]
