"""torchrun / DistributedDataParallel support for the trainer.

``pixmend train`` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK). With one process nothing
changes; with several, the model is wrapped in DDP (NCCL on GPUs, gloo on CPU), each rank reads its own
share of every epoch's permutation, and only rank 0 logs, validates into TensorBoard and writes checkpoints.
"""

from __future__ import annotations

import os

import torch


class DistContext:
    def __init__(self, rank: int, world: int, local_rank: int, device: torch.device):
        self.rank, self.world, self.local_rank, self.device = rank, world, local_rank, device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "auto") -> "DistContext":
        from .train import pick_device

        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        dev = pick_device(device)
        if world > 1:
            import torch.distributed as dist

            if dev.type == "cuda":
                dev = torch.device("cuda", local_rank)
                torch.cuda.set_device(dev)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        return cls(rank, world, local_rank, dev)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world <= 1:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(model, device_ids=ids)

    def replicas_identical(self, model: torch.nn.Module) -> bool | None:
        """After training: do all ranks hold the same weights? (DDP keeps them in sync; this checks it.) Each
        rank's parameters are flattened to one float64 vector and gathered; None with one process."""
        if self.world <= 1:
            return None
        import torch.distributed as dist

        m = model.module if hasattr(model, "module") else model
        flat = torch.cat([p.detach().double().flatten().cpu() for p in m.parameters()])
        if self.device.type == "cuda":
            flat = flat.to(self.device)
        gathered = [torch.empty_like(flat) for _ in range(self.world)]
        dist.all_gather(gathered, flat)
        return all(torch.equal(gathered[0], g) for g in gathered[1:])

    def describe(self) -> str:
        return f"{self.world} process(es), {self.device}"

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()
