"""Writing one video, as it is computed, into a file of its own that appears only when complete.

A staged file is a one-video shard. It is written under a temporary name, frame pair by frame pair
(so memory stays flat), and renamed into place after its last byte and its `complete` attribute are
on disk. A process killed mid-video leaves only a temporary file, which the next run deletes.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from flowkit.store.codec import encode_jpeg
from flowkit.store.format import (
    BYTES_ATTR,
    CHECKSUM_ATTR,
    COMPLETE_ATTR,
    ENCODING_ATTR,
    ENCODING_JPEG,
    ENCODING_RAW,
    FALLBACKS_ATTR,
    FLOW,
    FLOW_BACKWARD,
    QUALITY_ATTR,
    RGB,
    WARPED_FLOW,
    VideoAttrs,
    flow_dataset,
    video_group,
)
from flowkit.store.layout import safe_name
from flowkit.store.pending import PendingShard

DEFAULT_COMPRESSION = 4
DEFAULT_QUALITY = 95  # denseflow's and OpenCV's JPEG quality
_GROWTH = 64  # datasets grow in steps of this many frames and are trimmed when the video ends


class _RawFlowSeries:
    """A growing uint8 (N, 2, H, W) dataset, one deflate-compressed chunk per frame pair."""

    def __init__(self, group: h5py.Group, name: str, height: int, width: int, level: int) -> None:
        options = {"compression": "gzip", "compression_opts": level} if level > 0 else {}
        self.dataset = group.create_dataset(
            name, shape=(_GROWTH, 2, height, width), maxshape=(None, 2, height, width),
            chunks=(1, 2, height, width), dtype=np.uint8, **options,
        )
        self.dataset.attrs[ENCODING_ATTR] = ENCODING_RAW
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
    """A growing dataset of JPEG files: shape (N,) for RGB frames, (N, 2) for flow's u and v."""

    def __init__(self, group: h5py.Group, name: str, parts: int, quality: int) -> None:
        shape = (_GROWTH,) if parts == 1 else (_GROWTH, parts)
        self.dataset = group.create_dataset(
            name, shape=shape, maxshape=(None, *shape[1:]), chunks=shape,
            dtype=h5py.vlen_dtype(np.uint8),
        )
        self.dataset.attrs[ENCODING_ATTR] = ENCODING_JPEG
        self.dataset.attrs[QUALITY_ATTR] = quality
        self.parts = parts
        self.count = 0
        self.crc = 0
        self.bytes = 0

    def append(self, files: Sequence[np.ndarray | bytes]) -> None:
        arrays = [np.frombuffer(f, np.uint8) if isinstance(f, bytes) else f.ravel() for f in files]
        for array in arrays:
            self.crc = zlib.crc32(array.tobytes(), self.crc)
            self.bytes += array.size
        if self.count == self.dataset.shape[0]:
            self.dataset.resize(self.count + _GROWTH, axis=0)
        if self.parts == 1:
            self.dataset[self.count] = arrays[0]
        else:
            # A (1, parts) object array: h5py would read a plain list of equal-length arrays as
            # one 2-D array and refuse to store it.
            row = np.empty((1, self.parts), dtype=object)
            for i, array in enumerate(arrays):
                row[0, i] = array
            self.dataset[self.count : self.count + 1] = row
        self.count += 1

    def finish(self) -> None:
        self.dataset.resize(self.count, axis=0)
        self.dataset.attrs[CHECKSUM_ATTR] = np.uint32(self.crc)
        # Variable-length data lives outside the dataset's own storage, so record its size.
        self.dataset.attrs[BYTES_ATTR] = np.int64(self.bytes)


class StagedVideoWriter:
    """One video's flow (optionally backward and warped flow too) and RGB frames, streamed into a
    staged file; every flow dataset is written alike (`flow_format`, quality, checksums).

    Flow is stored as JPEG files of its u and v codes (`flow_format="jpeg"`, denseflow's bytes and
    2.4x smaller) or as a lossless deflate-compressed uint8 array (`"raw"`). Use the `append_*`
    methods as data arrives, then `commit(attrs)` to publish the video, or `abort()` to drop it.
    """

    def __init__(
        self,
        staging_dir: Path,
        video_id: str,
        height: int,
        width: int,
        *,
        backward: bool = False,
        warped: bool = False,
        rgb_quality: int | None = DEFAULT_QUALITY,
        flow_format: str = ENCODING_JPEG,
        flow_quality: int = DEFAULT_QUALITY,
        compression: int = DEFAULT_COMPRESSION,
    ) -> None:
        if flow_format not in (ENCODING_JPEG, ENCODING_RAW):
            raise ValueError(f"flow_format must be {ENCODING_JPEG!r} or {ENCODING_RAW!r}, not {flow_format!r}")
        self.video_id = video_id
        self.size = 0  # bytes of the published file, set by commit()
        self.flow_quality = flow_quality
        self.rgb_quality = rgb_quality
        self._pending = PendingShard(Path(staging_dir) / f"{safe_name(video_id)}.h5")
        self.final_path = self._pending.final_path
        self._group = self._pending.file.create_group(video_group(video_id))

        def flow_series(name: str) -> _RawFlowSeries | _JpegSeries:
            if flow_format == ENCODING_RAW:
                return _RawFlowSeries(self._group, name, height, width, compression)
            return _JpegSeries(self._group, name, 2, flow_quality)

        wanted = (FLOW, FLOW_BACKWARD if backward else None, WARPED_FLOW if warped else None)
        self._flows = {name: flow_series(name) for name in wanted if name is not None}
        self.rgb = (
            _JpegSeries(self._group, RGB, 1, rgb_quality) if rgb_quality is not None else None
        )

    def _flow(self, backward: bool, warped: bool = False) -> _RawFlowSeries | _JpegSeries:
        name = flow_dataset(backward, warped)
        assert name in self._flows, f"writer was opened without {name}"
        return self._flows[name]

    def append_flow(self, codes: np.ndarray, backward: bool = False, warped: bool = False) -> None:
        """Quantized flow of the next pair, uint8 (2, H, W): u codes, then v codes (of the
        backward or the warped flow when asked)."""
        series = self._flow(backward, warped)
        if isinstance(series, _RawFlowSeries):
            series.append(codes)
        else:
            series.append([encode_jpeg(codes[0], self.flow_quality),
                           encode_jpeg(codes[1], self.flow_quality)])

    def append_flow_jpeg(self, u_file: bytes, v_file: bytes, backward: bool = False) -> None:
        """The next pair as JPEG files of its u and v codes, stored byte for byte."""
        series = self._flow(backward)
        assert isinstance(series, _JpegSeries), "writer stores flow raw, not as JPEG"
        series.append([u_file, v_file])

    def append_rgb(self, frame: np.ndarray) -> None:
        """The next BGR frame, JPEG-encoded at the writer's RGB quality."""
        assert self.rgb is not None, "writer was opened without RGB frames"
        self.rgb.append([encode_jpeg(frame, self.rgb_quality)])

    def append_rgb_jpeg(self, jpeg_file: bytes) -> None:
        """The next frame as a JPEG file, stored byte for byte."""
        assert self.rgb is not None, "writer was opened without RGB frames"
        self.rgb.append([jpeg_file])

    def commit(self, attrs: VideoAttrs, homography_fallbacks: int = 0) -> Path:
        """Finish every dataset, write the attributes with `complete` last, and publish the file.

        `homography_fallbacks`: pairs of the warped flow stored unwarped (identity), recorded on
        `warped_flow` when the writer has it."""
        for series in (*self._flows.values(), self.rgb):
            if series is not None:
                series.finish()
        if WARPED_FLOW in self._flows:
            self._flows[WARPED_FLOW].dataset.attrs[FALLBACKS_ATTR] = np.int64(homography_fallbacks)
        for key, value in attrs.stamped().items():
            self._group.attrs[key] = value
        self._group.attrs[COMPLETE_ATTR] = True
        # Measured before publishing: once published, the main process may pack and delete it.
        self.size = self._pending.publish()
        return self.final_path

    def abort(self) -> None:
        """Drop the half-written video."""
        self._pending.discard()

