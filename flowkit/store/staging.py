"""Writing one video, as it is computed, into a file of its own that appears only when complete.

A staged file is a one-video shard. It is written under a temporary name, frame pair by frame pair
(so memory stays flat), and renamed into place after its last byte and its `complete` attribute are
on disk. A process killed mid-video leaves only a temporary file, which the next run deletes.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import h5py
import numpy as np

from flowkit.store.format import (
    BYTES_ATTR,
    CHECKSUM_ATTR,
    COMPLETE_ATTR,
    FLOW,
    FLOW_BACKWARD,
    FORMAT_VERSION,
    RGB,
    RGB_ENCODING,
    SHARD_FORMAT_NAME,
    VideoAttrs,
    video_group,
)
from flowkit.store.layout import TMP_SUFFIX, publish, safe_name

DEFAULT_COMPRESSION = 4
_GROWTH = 64  # datasets grow in steps of this many frames and are trimmed when the video ends


class _FlowSeries:
    """A growing uint8 (N, 2, H, W) dataset, one deflate-compressed chunk per frame pair."""

    def __init__(self, group: h5py.Group, name: str, height: int, width: int, level: int) -> None:
        options = {"compression": "gzip", "compression_opts": level} if level > 0 else {}
        self.dataset = group.create_dataset(
            name, shape=(_GROWTH, 2, height, width), maxshape=(None, 2, height, width),
            chunks=(1, 2, height, width), dtype=np.uint8, **options,
        )
        self.level = level
        self.count = 0
        self.crc = 0

    def append(self, codes: np.ndarray) -> None:
        data = np.ascontiguousarray(codes, dtype=np.uint8).tobytes()
        self.crc = zlib.crc32(data, self.crc)
        if self.count == self.dataset.shape[0]:
            self.dataset.resize(self.count + _GROWTH, axis=0)
        # Compressing here (zlib releases the GIL) and writing the chunk directly lets this run
        # in a writer thread beside the flow computation.
        chunk = zlib.compress(data, self.level) if self.level > 0 else data
        self.dataset.id.write_direct_chunk((self.count, 0, 0, 0), chunk)
        self.count += 1

    def finish(self) -> None:
        self.dataset.resize(self.count, axis=0)
        self.dataset.attrs[CHECKSUM_ATTR] = np.uint32(self.crc)


class _JpegSeries:
    """A growing 1-D dataset of variable-length uint8 arrays, one encoded frame each."""

    def __init__(self, group: h5py.Group, quality: int) -> None:
        self.dataset = group.create_dataset(
            RGB, shape=(_GROWTH,), maxshape=(None,), chunks=(_GROWTH,),
            dtype=h5py.vlen_dtype(np.uint8),
        )
        self.dataset.attrs["encoding"] = RGB_ENCODING
        self.dataset.attrs["quality"] = quality
        self.count = 0
        self.crc = 0
        self.bytes = 0

    def append(self, encoded: np.ndarray) -> None:
        data = np.ascontiguousarray(encoded, dtype=np.uint8).ravel()
        self.crc = zlib.crc32(data.tobytes(), self.crc)
        self.bytes += data.size
        if self.count == self.dataset.shape[0]:
            self.dataset.resize(self.count + _GROWTH, axis=0)
        self.dataset[self.count] = data
        self.count += 1

    def finish(self) -> None:
        self.dataset.resize(self.count, axis=0)
        self.dataset.attrs[CHECKSUM_ATTR] = np.uint32(self.crc)
        # Variable-length data lives outside the dataset's own storage, so record its size.
        self.dataset.attrs[BYTES_ATTR] = np.int64(self.bytes)


class StagedVideoWriter:
    """One video's flow (and optionally backward flow and JPEG frames), streamed into a staged file.

    Use `append_*` as data arrives, then `commit(attrs)` to publish it, or `abort()` to drop it.
    """

    def __init__(
        self,
        staging_dir: Path,
        video_id: str,
        height: int,
        width: int,
        *,
        backward: bool = False,
        rgb_quality: int | None = 95,
        compression: int = DEFAULT_COMPRESSION,
    ) -> None:
        self.video_id = video_id
        self.final_path = Path(staging_dir) / f"{safe_name(video_id)}.h5"
        self.tmp_path = self.final_path.with_name(f"{self.final_path.name}.{os.getpid()}{TMP_SUFFIX}")
        self._file = h5py.File(self.tmp_path, "w")
        self._file.attrs["format"] = SHARD_FORMAT_NAME
        self._file.attrs["format_version"] = FORMAT_VERSION
        self._group = self._file.create_group(video_group(video_id))
        self.flow = _FlowSeries(self._group, FLOW, height, width, compression)
        self.flow_backward = (
            _FlowSeries(self._group, FLOW_BACKWARD, height, width, compression) if backward else None
        )
        self.rgb = _JpegSeries(self._group, rgb_quality) if rgb_quality is not None else None

    def append_flow(self, codes: np.ndarray) -> None:
        """Quantized forward flow of the next pair, uint8 (2, H, W)."""
        self.flow.append(codes)

    def append_backward_flow(self, codes: np.ndarray) -> None:
        """Quantized backward flow of the next pair (frame i+step to frame i), uint8 (2, H, W)."""
        assert self.flow_backward is not None, "writer was opened without backward flow"
        self.flow_backward.append(codes)

    def append_rgb(self, encoded: np.ndarray) -> None:
        """The next frame, already JPEG-encoded."""
        assert self.rgb is not None, "writer was opened without RGB frames"
        self.rgb.append(encoded)

    def commit(self, attrs: VideoAttrs) -> Path:
        """Finish every dataset, write the attributes with `complete` last, and publish the file."""
        for series in (self.flow, self.flow_backward, self.rgb):
            if series is not None:
                series.finish()
        for key, value in attrs.stamped().items():
            self._group.attrs[key] = value
        self._group.attrs[COMPLETE_ATTR] = True
        self._file.close()
        publish(self.tmp_path, self.final_path)
        return self.final_path

    def abort(self) -> None:
        """Drop the half-written video."""
        try:
            self._file.close()
        finally:
            self.tmp_path.unlink(missing_ok=True)
