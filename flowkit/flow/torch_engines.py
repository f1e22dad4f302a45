"""The engines that run on torch, CPU or GPU: flowkit's TV-L1 and MotionNet. torch itself is
imported lazily, so listing the engines costs no torch import."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from flowkit.devices import resolve_device
from flowkit.errors import FlowkitError
from flowkit.flow.engine_base import FlowEngine, Param, has_cxx_compiler
from flowkit.flow.tvl1_params import TVL1_PARAMS, TVL1Params, check_tvl1_params


class TorchEngine(FlowEngine):
    """An engine on torch: each call runs on `threads` intra-op threads (None: the process's own
    count), as `set_threads` says, and the process's count is restored after the call."""

    backend = "torch"
    threads: int | None = None

    def set_threads(self, threads: int) -> None:
        super().set_threads(threads)
        self.threads = max(1, int(threads))

    @contextlib.contextmanager
    def _own_threads(self) -> Iterator[None]:
        """torch's intra-op thread count set to this engine's for the call, then restored."""
        import torch

        before = torch.get_num_threads()
        if self.threads is not None and before != self.threads:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)


class TorchTVL1Engine(TorchEngine):
    """flowkit's TV-L1 in PyTorch (flowkit.flow.tvl1_torch): OpenCV's algorithm, batched, any device.

    `device` is `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`. `compile` fuses the inner
    iterations with torch.compile; by default on whenever it can be (a C++ compiler for CPU); an
    extraction decides it from its pair count (`flowkit.flow.compile_cache.worth_compiling`).
    Each call runs on `threads` intra-op threads, 1 unless `set_threads` says more: a frame's
    tensors are too small to share, and with 2 threads an uncompiled pair took 16x longer when
    another process kept a core busy (OpenMP's threads waiting for each other; BENCHMARKS.md,
    "Start-up"). Parallelism comes from worker processes instead.
    """

    algorithm = "tvl1"
    PARAMS = TVL1_PARAMS

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        device: str = "auto",
        compile: bool | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(params)
        from flowkit.flow import tvl1_torch

        p = self.params
        if p["gamma"] != 0:
            raise FlowkitError("the torch TV-L1 has no illumination term: use gamma=0 or --engine opencv")
        check_tvl1_params(p)
        resolved = resolve_device(device)
        self.device = str(resolved)
        if compile is None:
            compile = resolved.type == "cuda" or has_cxx_compiler()
        self.compiled = compile
        self.threads = 1
        self.fixed_batch = batch_size
        self.batch_size = batch_size or (1 if resolved.type == "cpu" else 32)
        solver_params = TVL1Params(
            tau=p["tau"], lambda_=p["lambda"], theta=p["theta"], nscales=p["nscales"],
            warps=p["warps"], epsilon=p["epsilon"], inner_iterations=p["inner_iterations"],
            outer_iterations=p["outer_iterations"], scale_step=p["scale_step"],
            median_filtering=p["median_filtering"], variant=p["variant"],
        )
        self.solver = tvl1_torch.TVL1Solver(solver_params, resolved, compile=compile)

    def calc(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        with self._own_threads():
            return self.solver.flow(prev, nxt).cpu().numpy()

    def batch_size_for(self, height: int, width: int) -> int:
        """On a CPU, one pair at a time for frames of 256 lines (measured fastest: the working set
        stays in cache), more for small frames, whose per-call overhead batching amortizes."""
        if self.fixed_batch or self.solver.device.type != "cpu":
            return self.batch_size
        return int(max(1, min(32, 2 ** np.floor(np.log2(65536 / (height * width))))))

    def calc_batch(self, prevs: Sequence[np.ndarray], nexts: Sequence[np.ndarray]) -> list[np.ndarray]:
        with self._own_threads():
            flows = self.solver.flow(np.stack(prevs), np.stack(nexts)).cpu().numpy()
        return list(flows)



class MotionNetEngine(TorchEngine):
    """MotionNet (flowkit.flow.motionnet, Zhu et al. 2017): a network's flow, from a weights file
    written by `flowkit fit-motionnet` (a pair model: `--frames 2`). An untrained MotionNet's flow
    is meaningless, so `weights` is required; `weights_sha256` is filled in from the file, so a
    dataset's stored settings change when the weights do. A 3-channel model sees each gray frame
    three times (engines receive gray frames)."""

    algorithm = "motionnet"
    PARAMS = (
        Param("weights", "", str, "MotionNet weights file (flowkit fit-motionnet); required"),
        Param("weights_sha256", "", str, "the weights file's SHA-256 (filled in; given, it must match)"),
    )

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        device: str = "auto",
        compile: bool | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(params)
        from flowkit.flow.motionnet_fit import load_motionnet

        resolved = resolve_device(device)
        self.device = str(resolved)
        self.net = load_motionnet(self.params["weights"], resolved)
        self.batch_size = batch_size or (1 if resolved.type == "cpu" else 16)

    @classmethod
    def resolve(cls, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """As the base, with the weights checked (they exist, are a pair MotionNet) and hashed."""
        from flowkit.flow.motionnet_fit import check_pair_weights

        p = super().resolve(params)
        p["weights_sha256"] = check_pair_weights(p["weights"], p["weights_sha256"])
        return p

    def calc(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return self.calc_batch([prev], [nxt])[0]

    def calc_batch(self, prevs: Sequence[np.ndarray], nexts: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        from flowkit.flow.motionnet import normalize_frames

        pairs = np.stack([np.stack(prevs), np.stack(nexts)], axis=1)[..., None]  # (N, 2, H, W, 1)
        pairs = np.repeat(pairs, self.net.channels, axis=-1)
        with torch.inference_mode(), self._own_threads():
            x = normalize_frames(torch.from_numpy(pairs).to(self.device))
            flow = self.net.flow_pixels(x)[:, 0]  # (N, 2, H, W)
        return list(flow.permute(0, 2, 3, 1).float().cpu().numpy())
