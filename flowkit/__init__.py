"""flowkit: TV-L1 optical flow into crash-safe HDF5 shards, and the two-stream networks that read them."""

import os

__version__ = "0.1.0"

# OpenCV and its FFmpeg backend print decoder chatter ("moov atom not found", "ac-tex damaged")
# straight to stderr. flowkit reports every bad video itself, in one line, so silence them unless
# the user asked for them.
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
