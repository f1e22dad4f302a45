"""The shard format: writing (staged videos, shards, index), reading, verifying, summarizing."""

from flowkit.store.dataset import DatasetWriter
from flowkit.store.reader import FlowStore, VideoRecord
from flowkit.store.verify import VerifyReport, verify_store

__all__ = ["DatasetWriter", "FlowStore", "VerifyReport", "VideoRecord", "verify_store"]
