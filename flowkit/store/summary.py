"""What a dataset holds, in numbers: for `flowkit info` and for scripts (`--json`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flowkit.store.damage import read_marks
from flowkit.store.format import BYTES_ATTR, FLOW, FLOW_DATASETS, RGB
from flowkit.store.layout import DatasetLayout
from flowkit.store.reader import FlowStore

LAYOUT_ATTR = "rawframes_layout"  # written by flowkit.rawframes (a layer above) on imported videos


def summarize(path: str | Path, storage: bool = True) -> dict[str, Any]:
    """Counts, sizes, settings and failures of the dataset at `path`.

    `storage` adds bytes per dataset kind, which opens every video (cheap, but not free).
    """
    with FlowStore(path) as store:
        entries = list(store.entries.values())
        shards = sorted({e.shard for e in entries})
        shard_bytes = sum(
            store.shard_path(s).stat().st_size for s in shards if store.shard_path(s).exists()
        )
        summary: dict[str, Any] = {
            "path": str(path),
            "format_version": store.attrs.get("format_version"),
            "flowkit_version": store.attrs.get("flowkit_version"),
            "updated_at": store.attrs.get("updated_at"),
            "videos": len(entries),
            "frames": sum(e.frames for e in entries),
            "pairs": sum(e.pairs for e in entries),
            "sizes": {f"{w}x{h}": n for (w, h), n in Counter((e.width, e.height) for e in entries).most_common()},
            "shards": len(shards),
            "bytes": Path(path).stat().st_size + shard_bytes,
            "settings": store.settings,
            "failures": [asdict(f) for f in store.failures],
            # Marks `flowkit verify` left on the copies the index links, until a run redoes them.
            "damaged": [asdict(m) for m in sorted(read_marks(DatasetLayout(path)).values(), key=lambda m: m.id)
                        if m.id in store.entries and store.entries[m.id].shard == m.shard],
        }
        if (store.settings or {}).get("imported_from"):  # the layout each video was read in
            layouts = Counter(str(store.video(v).group.attrs.get(LAYOUT_ATTR, "unknown")) for v in store.ids)
            summary["layouts"] = dict(layouts.most_common())
        if (store.settings or {}).get("warp"):
            summary["homography_fallbacks"] = _fallbacks(store)
        if storage:
            by_kind = Counter()
            for video_id in store.ids:
                group = store.video(video_id).group
                for name in (*FLOW_DATASETS, RGB):
                    if name in group:
                        dataset = group[name]
                        # JPEG files are variable-length data, stored apart: their size is an attr.
                        by_kind[name] += int(dataset.attrs.get(BYTES_ATTR, dataset.id.get_storage_size()))
            summary["bytes_by_kind"] = dict(by_kind)
            pairs = summary["pairs"]
            summary["bytes_per_pair"] = round(by_kind[FLOW] / pairs, 1) if pairs else None
    return summary


def _fallbacks(store: FlowStore) -> dict[str, Any]:
    """Warped pairs stored unwarped for want of a homography: in all, and per video that has any."""
    by_video = {}
    for video_id in store.ids:
        count = store.video(video_id).homography_fallbacks
        if count:
            by_video[video_id] = count
    return {"pairs": sum(by_video.values()), "videos": by_video}


def format_bytes(n: float) -> str:
    """`1.5 MB` for 1572864: binary units, as `du -h` counts."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def describe(summary: dict[str, Any], name: str) -> str:
    """The text `flowkit info` prints for a summary of the dataset `name`: counts, storage, the
    settings it was made with (read from what the dataset stored), layouts read, failures."""
    settings = summary["settings"]
    kinds = summary.get("bytes_by_kind", {})
    lines = [
        f"{name}  (flowkit format {summary['format_version']}, updated {summary['updated_at']})",
        f"videos     {summary['videos']}",
        f"frames     {summary['frames']} RGB frames, {summary['pairs']} flow pairs",
        "sizes      " + ", ".join(f"{size} ({n})" for size, n in summary["sizes"].items()),
        f"storage    {format_bytes(summary['bytes'])} in {summary['shards']} shard(s): "
        + ", ".join(f"{k} {format_bytes(v)}" for k, v in kinds.items())
        + (f"; {summary['bytes_per_pair']:.0f} B per flow pair" if summary.get("bytes_per_pair") else ""),
    ]
    if settings:
        params = " ".join(f"{k}={v}" for k, v in settings.get("params", {}).items())
        flow = settings.get("flow_format", "raw")
        if flow == "jpeg" and settings.get("flow_quality") is not None:
            flow += f" q{settings['flow_quality']}"
        rgb = "no"
        if settings.get("rgb"):
            quality = settings.get("rgb_quality")
            rgb = f"jpeg q{quality}" if quality is not None else "jpeg"
        engine = f" ({settings['engine']})" if settings.get("engine") else ""
        lines += [
            f"algorithm  {settings.get('algorithm')}{engine}  {params}".rstrip(),
            f"settings   bound {settings.get('bound', 0):g}, step {settings.get('step', 1)}, "
            f"size {settings.get('size')}, fps {settings.get('fps') or 'source'}, "
            f"backward {'yes' if settings.get('backward') else 'no'}, flow {flow}, rgb {rgb}"
            + (", warp yes" if settings.get("warp") else ""),
        ]
    if summary.get("layouts"):
        lines.append("layout     " + ", ".join(f"{name} ({n})" for name, n in summary["layouts"].items()))
    fallbacks = summary.get("homography_fallbacks")
    if fallbacks is not None:
        worst = sorted(fallbacks["videos"].items(), key=lambda item: (-item[1], item[0]))
        lines.append(f"warped     {fallbacks['pairs']} of {summary['pairs']} pairs without a homography "
                     f"(stored unwarped) in {len(worst)} video(s)")
        lines += [f"  {video_id}: {n}" for video_id, n in worst[:10]]
        if len(worst) > 10:
            lines.append(f"  ... and {len(worst) - 10} more (--json lists them all)")
    failures = summary["failures"]
    lines.append(f"failures   {len(failures)}")
    lines += [f"  {f['source']}: {f['error']}" for f in failures]
    damaged = summary.get("damaged", [])
    if damaged:
        lines.append(f"damaged    {len(damaged)}, marked by verify (the same extract redoes them)")
        lines += [f"  {m['id']}: {m['problem']}" for m in damaged]
    return "\n".join(lines)
