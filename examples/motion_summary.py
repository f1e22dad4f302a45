"""Summarize the motion in a flowkit dataset: mean speed and dominant direction per video.

    python examples/motion_summary.py out.h5 [--picture fastest.png]

A starting point for your own analysis: it reads flow through `FlowStore`, which hides whether
flow is stored as JPEG code images or as a raw array, and converts codes to pixels.
"""

from __future__ import annotations

import argparse
import math

import cv2
import numpy as np

from flowkit.flow import flow_to_color
from flowkit.store import FlowStore


def video_motion(store: FlowStore, video_id: str) -> tuple[float, float, int]:
    """(mean speed in px/frame, mean direction in degrees, index of the fastest pair)."""
    video = store.video(video_id)
    speeds, mean_u, mean_v = [], 0.0, 0.0
    for i in range(video.entry.pairs):
        flow = video.flow_pixels(i)
        speeds.append(float(np.linalg.norm(flow, axis=-1).mean()))
        mean_u += float(flow[..., 0].mean())
        mean_v += float(flow[..., 1].mean())
    direction = math.degrees(math.atan2(-mean_v, mean_u))  # 0 = right, 90 = up
    return float(np.mean(speeds)), direction, int(np.argmax(speeds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--picture", help="write the fastest pair of the fastest video here")
    args = parser.parse_args()
    with FlowStore(args.dataset) as store:
        rows = {video_id: video_motion(store, video_id) for video_id in store.ids}
        print(f"{'video':40s} {'speed px/frame':>15s} {'direction deg':>14s}")
        for video_id, (speed, direction, _) in rows.items():
            print(f"{video_id:40s} {speed:15.2f} {direction:14.0f}")
        if args.picture and rows:
            fastest = max(rows, key=lambda v: rows[v][0])
            flow = store.video(fastest).flow_pixels(rows[fastest][2])
            cv2.imwrite(args.picture, flow_to_color(flow)[..., ::-1])
            print(f"wrote {args.picture} ({fastest}, pair {rows[fastest][2]})")


if __name__ == "__main__":
    main()
