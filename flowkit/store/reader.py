"""Reading a dataset: the index's table for listing, the shards themselves for data.

    with FlowStore("out.h5") as store:
        video = store.video("ucf101/v_ApplyEyeMakeup_g01_c01")
        codes = video.flow_codes(0)      # uint8 (2, H, W): frame 0 -> frame 1, u then v
        flow = video.flow_pixels(0)      # float32 (H, W, 2) in pixels
        warped = video.flow_pixels(0, warped=True)   # camera motion removed (extract --warp)
        frame = video.rgb_frame(0)       # uint8 (H, W, 3) BGR

Shard files are opened directly (the index table says which), once each and only when needed, so
a store object is cheap to create; open one per DataLoader worker, never share it across a fork.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np

from flowkit.errors import StoreError
from flowkit.flow.quantize import dequantize_flow
from flowkit.store.codec import decode_jpeg
from flowkit.store.failures import FailureRecord
from flowkit.store.format import (
    ENCODING_ATTR,
    ENCODING_JPEG,
    ENCODING_RAW,
    FALLBACKS_ATTR,
    FLOW,
    FLOW_BACKWARD,
    RGB,
    WARPED_FLOW,
    as_text,
    flow_dataset,
    video_group,
)
from flowkit.store.index import IndexEntry, read_index
from flowkit.store.shards import read_video_attrs


class VideoRecord:
    """One video's datasets and attributes, read lazily from its shard.

    Data loaders create one per sample, so nothing is read until asked for, and what is read
    is kept: reading every attribute up front would cost a millisecond per sample.
    """

    def __init__(self, entry: IndexEntry, group: h5py.Group) -> None:
        self.entry = entry
        self.group = group

    @property
    def id(self) -> str:
        return self.entry.id

    @cached_property
    def attrs(self) -> dict[str, Any]:
        return read_video_attrs(self.group)

    @cached_property
    def bound(self) -> float:
        return float(self.group.attrs["bound"])

    @cached_property
    def step(self) -> int:
        return int(self.group.attrs.get("step", 1))

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.attrs["params"])

    @cached_property
    def flow(self) -> h5py.Dataset:
        """The stored forward flow: pair i is the motion from frame i to frame i + step.

        Its layout depends on `flow_encoding`; `flow_codes` reads either as uint8 arrays.
        """
        return self.group[FLOW]

    @cached_property
    def flow_backward(self) -> h5py.Dataset | None:
        """The stored backward flow (frame i + step to frame i), if extracted with --backward."""
        return self.group.get(FLOW_BACKWARD)

    @cached_property
    def warped_flow(self) -> h5py.Dataset | None:
        """The stored camera-motion-compensated forward flow, if extracted with --warp."""
        return self.group.get(WARPED_FLOW)

    @property
    def homography_fallbacks(self) -> int | None:
        """Pairs of the warped flow stored unwarped (no homography found); None without it."""
        dataset = self.warped_flow
        return None if dataset is None else int(dataset.attrs.get(FALLBACKS_ATTR, 0))

    @cached_property
    def _rgb(self) -> h5py.Dataset | None:
        return self.group.get(RGB)

    @cached_property
    def flow_encoding(self) -> str:
        """`jpeg` (u and v code images as JPEG files) or `raw` (uint8 (pairs, 2, H, W))."""
        return as_text(self.flow.attrs.get(ENCODING_ATTR, ENCODING_RAW))

    @property
    def has_rgb(self) -> bool:
        return self._rgb is not None

    def _flow_dataset(self, backward: bool, warped: bool = False) -> h5py.Dataset:
        dataset = self.group.get(flow_dataset(backward, warped))
        if dataset is None:
            what, option = ("warped", "--warp") if warped else ("backward", "--backward")
            raise StoreError(f"video {self.id} has no {what} flow (extract with {option})")
        return dataset

    def flow_codes(self, index: int | slice, backward: bool = False, warped: bool = False) -> np.ndarray:
        """Quantized flow as uint8: (2, H, W) for one pair, (n, 2, H, W) for a slice of pairs;
        the backward or the warped flow when asked (all share one encoding)."""
        dataset = self._flow_dataset(backward, warped)
        if self.flow_encoding == ENCODING_RAW:
            return dataset[index]
        rows = dataset[index]
        if isinstance(index, slice):
            return np.stack([_decode_pair(row) for row in rows]) if len(rows) else np.empty(
                (0, 2, self.entry.height, self.entry.width), np.uint8)
        return _decode_pair(rows)

    def flow_jpeg(self, index: int, backward: bool = False, warped: bool = False) -> tuple[bytes, bytes]:
        """Pair `index` as stored: the JPEG files of its u and v codes (jpeg encoding only)."""
        if self.flow_encoding != ENCODING_JPEG:
            raise StoreError(f"video {self.id} stores flow raw, not as JPEG files")
        u_file, v_file = self._flow_dataset(backward, warped)[index]
        return u_file.tobytes(), v_file.tobytes()

    def flow_pixels(self, index: int, backward: bool = False, warped: bool = False) -> np.ndarray:
        """Pair `index` dequantized to float32 (H, W, 2) displacements in pixels."""
        return np.moveaxis(dequantize_flow(self.flow_codes(index, backward, warped), self.bound), 0, -1)

    def flow_stack(self, indices: np.ndarray, backward: bool = False, warped: bool = False) -> np.ndarray:
        """Pairs `indices` as uint8 (N, H, W, 2), u then v on the last axis: the layout samples
        are cut from, each JPEG decoded straight into its place (no per-pair arrays stacked);
        raw flow as a view of what was read (not contiguous: a sample crops before it copies)."""
        dataset = self._flow_dataset(backward, warped)
        entry = self.entry
        if self.flow_encoding == ENCODING_RAW and len(indices):
            return np.moveaxis(np.asarray(_rows(dataset, indices)), 1, -1)  # a view: samples crop it first
        out = np.empty((len(indices), entry.height, entry.width, 2), np.uint8)
        for n, (u_file, v_file) in enumerate(_rows(dataset, indices)):
            # cv2.merge interleaves into the row in place: 0.3 ms a snippet less than numpy's strided copy
            cv2.merge([decode_jpeg(u_file, grayscale=True), decode_jpeg(v_file, grayscale=True)], dst=out[n])
        return out

    def rgb_stack(self, indices: np.ndarray) -> np.ndarray:
        """Frames `indices` as uint8 (N, H, W, 3) in RGB order (stored frames decode to BGR)."""
        if self._rgb is None:
            raise StoreError(f"video {self.id} has no RGB frames (extracted with --no-rgb)")
        out = np.empty((len(indices), self.entry.height, self.entry.width, 3), np.uint8)
        for n, jpeg_file in enumerate(_rows(self._rgb, indices)):
            out[n] = decode_jpeg(jpeg_file)[..., ::-1]
        return out

    def rgb_jpeg(self, index: int) -> bytes:
        """Frame `index` as stored: the bytes of a JPEG file."""
        if self._rgb is None:
            raise StoreError(f"video {self.id} has no RGB frames (extracted with --no-rgb)")
        return self._rgb[index].tobytes()

    def rgb_frame(self, index: int) -> np.ndarray:
        """Frame `index` decoded to uint8 (H, W, 3), BGR as OpenCV gives it."""
        return decode_jpeg(self.rgb_jpeg(index))


def _rows(dataset: h5py.Dataset, indices: np.ndarray) -> np.ndarray | list[np.ndarray]:
    """Rows `indices` of a dataset: one read for consecutive ones (every snippet of a 2D network,
    every clip of stride 1), else one per row."""
    indices = np.asarray(indices)
    if len(indices) > 1 and np.all(np.diff(indices) == 1):
        return dataset[int(indices[0]) : int(indices[-1]) + 1]
    return [dataset[int(i)] for i in indices]


def _decode_pair(row: np.ndarray) -> np.ndarray:
    return np.stack([decode_jpeg(row[0], grayscale=True), decode_jpeg(row[1], grayscale=True)])


class FlowStore:
    """A flowkit dataset opened for reading."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        contents = read_index(self.path)
        self.settings: dict[str, Any] = contents.settings
        self.entries: dict[str, IndexEntry] = contents.entries
        self.failures: list[FailureRecord] = contents.failures
        self.attrs: dict[str, Any] = contents.attrs
        self._files: dict[str, h5py.File] = {}

    @property
    def ids(self) -> list[str]:
        return list(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def shard_path(self, shard: str) -> Path:
        return self.path.parent / shard

    def _shard(self, shard: str) -> h5py.File:
        handle = self._files.get(shard)
        if handle is None:
            path = self.shard_path(shard)
            try:
                handle = h5py.File(path, "r")
            except OSError as exc:
                raise StoreError(f"cannot open shard {path}: {exc}") from None
            self._files[shard] = handle
        return handle

    def video(self, video_id: str) -> VideoRecord:
        try:
            entry = self.entries[video_id]
        except KeyError:
            raise StoreError(f"{self.path} has no video {video_id!r}") from None
        handle = self._shard(entry.shard)
        try:
            group = handle[video_group(video_id)]
        except KeyError:
            raise StoreError(f"shard {entry.shard} has no video {video_id!r}") from None
        return VideoRecord(entry, group)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def __enter__(self) -> FlowStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
