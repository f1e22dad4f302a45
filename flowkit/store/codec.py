"""JPEG, the format's one image codec: RGB frames always, flow codes unless stored raw."""

from __future__ import annotations

import cv2
import numpy as np

from flowkit.errors import StoreError

JPEG_MAGIC = b"\xff\xd8"


def encode_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """A BGR (H, W, 3) or grayscale (H, W) uint8 image as JPEG file bytes (uint8, 1-D)."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise StoreError(f"JPEG encoding of a {image.shape} image failed")
    return encoded.ravel()


def decode_jpeg(data: np.ndarray | bytes, grayscale: bool = False) -> np.ndarray:
    """JPEG file bytes to a BGR (H, W, 3) or grayscale (H, W) uint8 image."""
    buffer = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    image = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR)
    if image is None:
        raise StoreError("stored bytes are not a decodable JPEG image")
    return image


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG file's frame header, without decoding; None if not found."""
    if not data.startswith(JPEG_MAGIC):
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF_MARKERS and pos + 9 <= len(data):
            return int.from_bytes(data[pos + 5 : pos + 7], "big"), int.from_bytes(data[pos + 7 : pos + 9], "big")
        pos += 2 + length
    return None
