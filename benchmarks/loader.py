"""Loader speed: TSN samples/s read from flowkit shards against the same samples from rawframes.

    python benchmarks/loader.py [--quick] [--out results.json]
    python benchmarks/loader.py --profile [--out results.json]

The videos of ../shared/testdata/videos are extracted three ways (flow as JPEG, the default;
raw uint8 with deflate; raw uint8 uncompressed) and exported as mmaction2 rawframes. Every
loader is the same `flowkit.data.ShardDataset` code (sampling, TSN multi-scale crop to 224,
flip, normalisation, layout); only where frames come from differs: HDF5 shards, or one JPEG
file per frame and flow component read with cv2.imread. Each runs in a DataLoader with the
same settings, timed over whole epochs, with the page cache warm (files read before) and cold
(evicted with posix_fadvise before each epoch). Flow: K=3 segments x L=5 flows; RGB: K=3 frames.

`--profile`: where one TSN flow sample's time goes, in one process (no DataLoader), page cache
warm: the reads of its 3 snippets (h5py, or files for rawframes) and their decoding, the views
(crop, resize, flip, values, layout) and the final stack; and, for the format-v2 question, the
same snippets read from a packed layout built here (each video's JPEG files as one contiguous
uint8 dataset plus offsets: one read per snippet) against format 1's variable-length rows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowkit.data.annotations import Annotation  # noqa: E402
from flowkit.data.datasets import RGB, Flow, ShardDataset  # noqa: E402
from flowkit.extraction.pipeline import ExtractSettings, extract  # noqa: E402
from flowkit.rawframes import export_rawframes  # noqa: E402
from flowkit.store.index import IndexEntry  # noqa: E402
from flowkit.store.reader import FlowStore  # noqa: E402

VIDEOS = ROOT.parent / "shared" / "testdata" / "videos"


# ---- rawframes, read through the same dataset code ---------------------------------------------


class RawframesVideo:
    """The parts of `flowkit.store.reader.VideoRecord` the datasets use, over a rawframes folder."""

    def __init__(self, folder: Path, entry: IndexEntry, bound: float) -> None:
        self.folder, self.entry, self.bound = folder, entry, bound

    def rgb_frame(self, index: int) -> np.ndarray:
        return cv2.imread(str(self.folder / f"img_{index + 1:05d}.jpg"), cv2.IMREAD_COLOR)

    def rgb_stack(self, indices: np.ndarray) -> np.ndarray:
        """As mmaction2's RawFrameDecode and FormatShape: each file read to an array, then stacked."""
        return np.stack([self.rgb_frame(int(i))[..., ::-1] for i in indices])

    def flow_stack(self, indices: np.ndarray, backward: bool = False, warped: bool = False) -> np.ndarray:
        return np.stack([np.stack([cv2.imread(str(self.folder / f"flow_{c}_{int(i) + 1:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
                                   for c in ("x", "y")], axis=-1) for i in indices])


class RawframesDataset(ShardDataset):
    """A ShardDataset whose videos are read from rawframes folders instead of shards."""

    def __init__(self, rawframes: Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rawframes = rawframes
        self.bound = 20.0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = self.rows[index]
        entry = self.entries[row.video]
        rng = self.rng(index)
        video = RawframesVideo(self.rawframes / row.video, entry, self.bound)
        return self.render(video, self.starts(entry, rng), self.crops(entry, rng)), row.label


# ---- the page cache -------------------------------------------------------------------------------


def evict(paths: list[Path]) -> None:
    """Drop these files from the page cache, so the next epoch reads them from the disk."""
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def epochs_per_second(dataset: ShardDataset, epochs: int, workers: int, batch: int,
                      cold_paths: list[Path] | None) -> float:
    """Samples/s over `epochs` epochs (one untimed first); files evicted before each if cold."""
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        persistent_workers=False, generator=torch.Generator().manual_seed(0))
    for _ in loader:  # warm-up epoch: worker start, imports, page cache when warm
        pass
    samples, seconds = 0, 0.0
    for epoch in range(epochs):
        dataset.set_epoch(epoch + 1)
        if cold_paths is not None:
            evict(cold_paths)
        start = time.perf_counter()
        for x, _ in loader:
            samples += x.shape[0]
        seconds += time.perf_counter() - start
    return samples / seconds


# ---- the run ----------------------------------------------------------------------------------------


def build(tmp: Path, quick: bool) -> dict[str, Path]:
    """Three extractions of the clips (DIS flow: loader speed does not depend on the engine)."""
    paths = {}
    for name, settings in (
        ("flowkit, flow JPEG (default)", ExtractSettings(algorithm="dis")),
        ("flowkit, flow raw deflate 4", ExtractSettings(algorithm="dis", flow_format="raw")),
        ("flowkit, flow raw uncompressed", ExtractSettings(algorithm="dis", flow_format="raw", compression=0)),
    ):
        out = tmp / name.split("(")[0].replace(",", "").replace(" ", "_") / "out.h5"
        out.parent.mkdir(parents=True)
        report = extract(VIDEOS, out, settings, progress=False)
        if not report.ok:
            raise RuntimeError(f"extraction failed: {report.failed}")
        paths[name] = out
        if quick:
            break
    first = next(iter(paths.values()))
    paths["rawframes (mmaction2 layout)"] = tmp / "rawframes"
    export_rawframes(first, tmp / "rawframes")
    return paths


def _best_ms(run: Any, count: int, repeats: int = 3) -> float:
    """The fastest of `repeats` timings of `run()`, in ms per item of `count`."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, (time.perf_counter() - start) / count * 1e3)
    return best


def profile(tmp: Path) -> dict[str, Any]:
    """One TSN flow sample's time by stage, flowkit against rawframes, and format 1's reads
    against a packed (one contiguous read per snippet) layout."""
    import h5py

    data = tmp / "v1.h5"
    extract(VIDEOS, data, ExtractSettings(algorithm="dis"), progress=False)
    export_rawframes(data, tmp / "rawframes")
    store = FlowStore(data)
    rows = [Annotation(vid, 0) for vid in store.ids]
    with h5py.File(tmp / "packed.h5", "w") as packed:
        for vid in store.ids:
            video = store.video(vid)
            files = [f for i in range(video.entry.pairs) for f in video.flow_jpeg(i)]
            packed[f"{vid}/flow"] = np.frombuffer(b"".join(files), np.uint8)
            packed[f"{vid}/offsets"] = np.cumsum([0] + [len(f) for f in files])
    rng = np.random.default_rng(0)
    snippets = [(vid, int(rng.integers(0, store.entries[vid].pairs - 5))) for vid in store.ids for _ in range(60)]
    handle = h5py.File(tmp / "packed.h5", "r")

    def format1() -> None:
        for vid, s in snippets:
            store.video(vid).flow[s:s + 5]

    def packed_reads() -> None:
        for vid, s in snippets:
            group = handle[vid]
            offsets = group["offsets"][2 * s: 2 * s + 11]
            block = group["flow"][offsets[0]:offsets[-1]]
            [block[a - offsets[0]:b - offsets[0]] for a, b in itertools.pairwise(offsets)]

    def decode_only() -> None:
        for vid, s in snippets:
            store.video(vid).flow_stack(np.arange(s, s + 5))

    timings = {"format 1 reads (h5py vlen rows), per snippet": _best_ms(format1, len(snippets)),
               "packed reads (one contiguous read), per snippet": _best_ms(packed_reads, len(snippets)),
               "format 1 reads + decode into (5, H, W, 2), per snippet": _best_ms(decode_only, len(snippets))}
    for name, dataset in (("flowkit", ShardDataset(data, rows, Flow(length=5), segments=3)),
                          ("rawframes", RawframesDataset(tmp / "rawframes", data, rows, Flow(length=5), segments=3))):
        timings[f"{name}: whole TSN flow sample (K=3, L=5, 224)"] = _best_ms(
            lambda d=dataset: [d[i % len(rows)] for i in range(60)], 60)
    handle.close()
    store.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="Where one sample's time goes, in one process.")
    args = parser.parse_args()
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="flowkit-loader-profile-") as tmp_name:
            timings = profile(Path(tmp_name))
        for name, ms in timings.items():
            print(f"| {name} | {ms:.2f} ms |")
        if args.out:
            args.out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]),
                                            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "ms": timings}, indent=1))
        return
    results: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
                    "torch": torch.__version__, "opencv": cv2.__version__, "loadavg_start": os.getloadavg()},
        "settings": {"workers": args.workers, "batch": args.batch, "crop": 224, "segments": 3,
                     "flow_length": 5},
        "rows": [],
    }
    epochs = 1 if args.quick else 4
    with tempfile.TemporaryDirectory(prefix="flowkit-loader-") as tmp_name:
        paths = build(Path(tmp_name), args.quick)
        first = next(iter(paths.values()))
        with FlowStore(first) as store:
            rows = [Annotation(vid, i % 2) for i, vid in enumerate(store.ids)] * 8  # 40 samples/epoch
        for modality_name, modality in (("flow K=3 L=5", Flow(length=5)), ("rgb K=3", RGB())):
            for name, path in paths.items():
                for cache in ("warm", "cold"):
                    if name.startswith("rawframes"):
                        dataset = RawframesDataset(path, first, rows, modality, segments=3)
                        cold = [path]
                    else:
                        dataset = ShardDataset(path, rows, modality, segments=3)
                        cold = [path, path.with_name(path.name + ".shards")]
                    speed = epochs_per_second(dataset, epochs, args.workers, args.batch,
                                              cold if cache == "cold" else None)
                    results["rows"].append({"input": modality_name, "source": name, "cache": cache,
                                            "samples_per_s": speed})
                    print(f"  {modality_name:12s} {name:32s} {cache}: {speed:7.1f} samples/s",
                          file=sys.stderr, flush=True)
    results["machine"]["loadavg_end"] = os.getloadavg()
    print(report(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=float))


def report(results: dict[str, Any]) -> str:
    rows = results["rows"]
    lines = ["| input | source | page cache | samples/s | vs rawframes |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        base = next(b for b in rows if b["input"] == r["input"] and b["cache"] == r["cache"]
                    and b["source"].startswith("rawframes"))
        lines.append(f"| {r['input']} | {r['source']} | {r['cache']} | {r['samples_per_s']:.1f} | "
                     f"{r['samples_per_s'] / base['samples_per_s']:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
