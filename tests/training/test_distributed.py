"""Training on several processes for real: gloo process groups of 2 CPU processes, and torchrun."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from flowkit.training.config import load_config
from flowkit.training.distributed import Ranks, RankSampler, epoch_order
from flowkit.training.streams import load_data, stream_datasets
from flowkit.training.trainer import Trainer

DEMO = ["--pipeline", "pipelines/demo.toml", "--set", "crop_size=40", "--set", "workers=0"]


@pytest.mark.parametrize("size, world", [(32, 2), (33, 2), (10, 3), (5, 1)])
def test_the_ranks_batches_together_are_the_global_batches(size, world):
    global_batch = 4 * world
    order = epoch_order(size, seed=3, epoch=2)
    shares = [list(RankSampler(size, 3, 2, Ranks(rank, world))) for rank in range(world)]
    assert len({len(share) for share in shares}) == 1  # every rank takes as many batches
    assert all(len(share) == len(RankSampler(size, 3, 2, Ranks(0, world))) for share in shares)
    covered = sorted(i for share in shares for i in share)
    assert set(covered) == set(range(size)) and len(covered) - size < world  # padding only
    local = global_batch // world
    for k in range(size // global_batch):
        together = sorted(i for share in shares for i in share[k * local : (k + 1) * local])
        assert together == sorted(order[k * global_batch : (k + 1) * global_batch])
    if world == 1:
        assert shares[0] == order


class SnippetAverage(nn.Module):
    """A network without batch statistics, so that 2 processes must learn exactly as 1 does."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten())
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:  # (batch, segments, C, H, W): average the segments' scores
            return self.fc(self.features(x.flatten(0, 1))).view(*x.shape[:2], -1).mean(1)
        return self.fc(self.features(x))


def _train_snippet_model(rank: int, world: int, data: Path, splits: Path, folder: Path, rendezvous: str) -> None:
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        config = load_config("pipelines/demo.toml", {"crop_size": "40", "workers": "0", "flow.epochs": "3",
                                                     "eval_every": "3"})
        labelled = load_data(data, splits)
        train_set, test_set = stream_datasets(config, "flow", labelled)
        model = SnippetAverage(10, len(labelled.classes))
        Trainer(folder, "flow", model, train_set, test_set, config.flow, config, labelled).fit(progress=False)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _losses(folder: Path) -> list[float]:
    with open(folder / "metrics.csv", newline="") as handle:
        return [float(row["train_loss"]) for row in csv.DictReader(handle)]


def test_two_processes_learn_exactly_as_one_with_the_same_global_batch(action_data, tmp_path):
    data, splits = action_data
    _train_snippet_model(0, 1, data, splits, tmp_path / "one", "")
    mp.spawn(_train_snippet_model, args=(2, data, splits, tmp_path / "two", str(tmp_path / "rendezvous")),
             nprocs=2, join=True)
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 3
    assert two == pytest.approx(one, rel=1e-4)
    a = torch.load(tmp_path / "one/final.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "two/final.pt", weights_only=False)["model"]
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a)
    # The test videos were scored half by each rank and gathered in their order.
    one_scores, two_scores = np.load(tmp_path / "one/scores.npz"), np.load(tmp_path / "two/scores.npz")
    assert list(one_scores["ids"]) == list(two_scores["ids"])
    assert np.allclose(one_scores["scores"], two_scores["scores"], rtol=1e-3, atol=1e-4)


# ---- torchrun, end to end -------------------------------------------------------------------------------

TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
# partial BN and no dropout: what differs between 1 and 2 processes is the first BN layer's
# batch statistics (8 samples a rank instead of 16), measured at 0.1%, 0.3%, 1.5% over 3 epochs.
SETTINGS = ["--set", "flow.epochs=3", "--set", "flow.dropout=0", "--set", "partial_bn=true",
            "--set", "eval_every=0", "-q"]


def _train(out: Path, data: Path, splits: Path, processes: int, *extra: str) -> list[str]:
    command = ["-m", "flowkit", "train", "--modality", "flow", "--data", str(data), "--labels", str(splits),
               *DEMO, *SETTINGS, "--out", str(out), *extra]
    if processes == 1:
        return [sys.executable, *command]
    return [TORCHRUN, "--standalone", "--nproc-per-node", str(processes), *command]


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")
def test_torchrun_matches_one_process_and_resumes_where_it_stopped(action_data, tmp_path):
    data, splits = action_data
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, processes in (("one", 1), ("two", 2)):
        done = subprocess.run(_train(tmp_path / name, data, splits, processes), capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("run:") == 1  # rank 0 alone prints
    one, two = _losses(tmp_path / "one/flow"), _losses(tmp_path / "two/flow")
    assert len(two) == 3
    assert two == pytest.approx(one, rel=0.05)

    # Stopped for real (the whole process group killed) after its first epoch, then resumed on 2.
    killed = tmp_path / "killed"
    process = subprocess.Popen(_train(killed, data, splits, 2), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        if (killed / "flow/last.pt").exists():
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "flow/final.pt").exists()
    resumed = subprocess.run(_train(killed, data, splits, 2, "--resume"), capture_output=True, text=True,
                             env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "two/flow/final.pt", weights_only=False)["model"]
    b = torch.load(killed / "flow/final.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert list(dict.fromkeys(_losses(killed / "flow"))) == two


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")
def test_a_global_batch_that_does_not_divide_among_the_processes_is_one_error(action_data, tmp_path):
    data, splits = action_data
    command = _train(tmp_path / "run", data, splits, 2, "--batch-size", "15")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    # One line from flowkit (rank 0 says it for all); torchrun adds its own report of the exit.
    assert done.stderr.count("error: batch_size 15 is the global batch; it must divide evenly among the 2 "
                             "processes\n") == 1
    assert "flowkit/" not in done.stderr  # no traceback through flowkit's code
    assert not (tmp_path / "run").exists()  # refused before the run folder was made
