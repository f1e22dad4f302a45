"""Where `flowkit features` writes: one HDF5 file (`features/<id>/<modality>`) or `.npy` files.

Crash safety is the store's (flowkit.store.layout): every file is written under a temporary name
and published by an fsync and a rename. For HDF5, each finished video is first staged as a
one-video file in `OUT.parts/`; the run then writes a new `OUT` (the old one's videos plus the
staged ones) under a temporary name and renames it into place, and only then deletes what it
merged. A process killed at any instruction leaves `OUT` as it was and every finished video
staged, so the next run loses only the videos that were unfinished. For `npy`, each
`<id>_<modality>.npy` is published on its own and a video is complete when all of its files are.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.store.layout import TMP_SUFFIX, fsync_dir, publish, safe_name, write_json_atomic

FORMAT = "flowkit-features"
FORMAT_VERSION = 1
MARKER = "flowkit_features.json"  # the settings file of an npy output folder

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl; locking is then skipped
    fcntl = None

LIBVER = ("v108", "latest")  # HDF5 1.8's format: attributes over 64 KB (the frames of a long video)
VideoFeatures = dict[str, tuple[np.ndarray, dict[str, Any]]]  # modality -> (features, attributes)


def _differ(old: dict[str, Any], new: dict[str, Any]) -> str:
    return ", ".join(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))


class FeatureOutput:
    """The common part of both formats: settings checked against what OUT holds, failure
    records, the write lock. `open` before use, `close` (or `with`) after."""

    def __init__(self, path: str | Path, settings: dict[str, Any]) -> None:
        self.path = Path(path)
        self.settings = settings
        self._lock: Any = None

    @property
    def work_dir(self) -> Path:
        """Staged videos, failure records and the lock."""
        raise NotImplementedError

    def stored_settings(self) -> dict[str, Any] | None:
        """The settings OUT was made with (None: no output yet); refuses anything else."""
        raise NotImplementedError

    def open(self) -> FeatureOutput:
        old = self.stored_settings()
        settings_file = self.work_dir / "settings.json"
        if old is None and settings_file.exists():
            old = json.loads(settings_file.read_text())
        if old is not None and old != self.settings:
            raise FlowkitError(f"{self.path} holds features made with other settings "
                               f"({_differ(old, self.settings)} differ); use another output")
        (self.work_dir / "failures").mkdir(parents=True, exist_ok=True)
        self._take_lock()
        write_json_atomic(settings_file, self.settings)
        for tmp in self.work_dir.rglob(f"*{TMP_SUFFIX}"):
            tmp.unlink()
        return self

    def _take_lock(self) -> None:
        self._lock = open(self.work_dir / ".lock", "a+")  # noqa: SIM115 - held until close
        if fcntl is not None:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._lock.close()
                raise FlowkitError(f"{self.path} is being written by another process") from None

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> FeatureOutput:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- failures: one JSON record per video, until it succeeds --------------------------------

    def _failure_file(self, video_id: str) -> Path:
        return self.work_dir / "failures" / f"{safe_name(video_id)}.json"

    def record_failure(self, video_id: str, error: str) -> None:
        write_json_atomic(self._failure_file(video_id), {"id": video_id, "error": error})

    def clear_failure(self, video_id: str) -> None:
        self._failure_file(video_id).unlink(missing_ok=True)

    def failures(self) -> dict[str, str]:
        records = (json.loads(p.read_text()) for p in sorted((self.work_dir / "failures").glob("*.json")))
        return {r["id"]: r["error"] for r in records}

    # ---- videos ------------------------------------------------------------------------------

    def done(self) -> set[str]:
        """The ids of every complete video, published or staged."""
        raise NotImplementedError

    def write(self, video_id: str, features: VideoFeatures) -> None:
        """Keep one video's features durably (whole or not at all)."""
        raise NotImplementedError

    def finish(self) -> None:
        """Make everything written so far part of OUT."""


class H5Output(FeatureOutput):
    """`OUT` (HDF5): root attributes `format`, `format_version`, `settings` (JSON); `videos` the
    ids it holds (strings); `features/<id>/<modality>` float32 (clips, dim) with its attributes."""

    @property
    def work_dir(self) -> Path:
        return self.path.with_name(self.path.name + ".parts")

    def stored_settings(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        not_ours = FlowkitError(f"{self.path} exists and is not a flowkit features file; "
                                "not overwriting it (choose another output)")
        try:
            with h5py.File(self.path, "r") as handle:
                if handle.attrs.get("format") != FORMAT:
                    raise not_ours
                return json.loads(handle.attrs["settings"])
        except (OSError, KeyError, ValueError):
            raise not_ours from None

    def _staged(self) -> list[Path]:
        return sorted(self.work_dir.glob("video-*.h5"))

    def open(self) -> H5Output:
        super().open()
        for tmp in self.path.parent.glob(f"{self.path.name}.*{TMP_SUFFIX}"):
            if tmp.name[len(self.path.name) + 1 : -len(TMP_SUFFIX)].isdigit():  # OUT.<pid>.tmp
                tmp.unlink()  # a new OUT a killed run was writing; we hold the lock
        self.finish()  # videos staged by a killed run
        return self

    def done(self) -> set[str]:
        ids: set[str] = set()
        if self.path.exists():
            with h5py.File(self.path, "r") as handle:
                ids.update(_video_ids(handle))
        for staged in self._staged():
            with h5py.File(staged, "r") as handle:
                ids.add(str(handle.attrs["id"]))
        return ids

    def write(self, video_id: str, features: VideoFeatures) -> None:
        final = self.work_dir / f"video-{safe_name(video_id)}.h5"
        tmp = final.with_name(final.name + TMP_SUFFIX)
        with h5py.File(tmp, "w", libver=LIBVER) as handle:
            handle.attrs["id"] = video_id
            _write_video(handle.create_group("features").require_group(video_id), features)
        publish(tmp, final)
        self.clear_failure(video_id)

    def finish(self) -> None:
        staged = self._staged()
        if not staged and self.path.exists():
            return
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}{TMP_SUFFIX}")
        videos: set[str] = set()
        with h5py.File(tmp, "w", libver=LIBVER) as out:
            out.attrs["format"], out.attrs["format_version"] = FORMAT, FORMAT_VERSION
            out.attrs["settings"] = json.dumps(self.settings, sort_keys=True)
            root = out.create_group("features")
            if self.path.exists():
                with h5py.File(self.path, "r") as old:
                    for video_id in _video_ids(old):
                        old.copy(old["features"][video_id], root, name=video_id)
                        videos.add(video_id)
            for path in staged:
                with h5py.File(path, "r") as part:
                    video_id = str(part.attrs["id"])
                    if video_id in root:
                        del root[video_id]
                    part.copy(part["features"][video_id], root, name=video_id)
                    videos.add(video_id)
            out.create_dataset("videos", data=np.array(sorted(videos), dtype=object),
                               dtype=h5py.string_dtype())
        publish(tmp, self.path)
        for path in staged:  # only now: OUT holds them
            path.unlink()
        fsync_dir(self.work_dir)


def _video_ids(handle: h5py.File) -> list[str]:
    """The ids of a features file's videos (its `videos` dataset)."""
    return list(handle["videos"].asstr()[()]) if "videos" in handle else []


def _write_video(group: h5py.Group, features: VideoFeatures) -> None:
    for modality, (array, attrs) in features.items():
        dataset = group.create_dataset(modality, data=array.astype(np.float32))
        for key, value in attrs.items():
            dataset.attrs[key] = value


class NpyOutput(FeatureOutput):
    """`OUT/` (a folder): `<id>_<modality>.npy` float32 (clips, dim), as video_features writes,
    `<id>_frames.npy` the frame indices of each clip, and `flowkit_features.json` the settings."""

    @property
    def work_dir(self) -> Path:
        return self.path / ".flowkit"

    def stored_settings(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        marker = self.path / MARKER
        if not self.path.is_dir() or (any(self.path.iterdir()) and not marker.exists()):
            raise FlowkitError(f"{self.path} exists and is not a flowkit features folder; "
                               "not overwriting it (choose another output)")
        return json.loads(marker.read_text()) if marker.exists() else None

    def open(self) -> NpyOutput:
        super().open()
        for tmp in self.path.rglob(f"*.npy{TMP_SUFFIX}"):  # a file a killed run was writing
            tmp.unlink()
        write_json_atomic(self.path / MARKER, self.settings)
        return self

    def _file(self, video_id: str, name: str) -> Path:
        return self.path / f"{video_id}_{name}.npy"

    def done(self) -> set[str]:
        modalities = self.settings["modalities"]
        ids = {str(p.relative_to(self.path))[: -len("_frames.npy")] for p in self.path.rglob("*_frames.npy")}
        return {i for i in ids if all(self._file(i, m).exists() for m in modalities)}

    def write(self, video_id: str, features: VideoFeatures) -> None:
        first = next(iter(features.values()))[1]
        arrays = {"frames": np.asarray(first["frames"])}  # first: the video is complete when all the others are
        arrays.update({m: a.astype(np.float32) for m, (a, _) in features.items()})
        for name, array in arrays.items():
            final = self._file(video_id, name)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(final.name + TMP_SUFFIX)
            with open(tmp, "wb") as handle:
                np.save(handle, array)
            publish(tmp, final)
        self.clear_failure(video_id)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            fsync_dir(self.path)


def open_output(path: str | Path, fmt: str, settings: dict[str, Any]) -> FeatureOutput:
    """The output of format `fmt` (`h5` or `npy`) at `path`; `with` it to open it (settings
    checked, lock taken)."""
    if fmt == "h5":
        return H5Output(path, settings)
    if fmt == "npy":
        return NpyOutput(path, settings)
    raise FlowkitError(f"--format must be h5 or npy, not {fmt!r}")
