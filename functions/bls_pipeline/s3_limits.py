"""S3's limits on one write, and the part arithmetic that keeps a multipart upload or copy within them.

Amazon S3 User Guide: "Amazon S3 multipart upload limits" (https://docs.aws.amazon.com/AmazonS3/latest/userguide/
qfacts.html) for parts and objects; "Uploading objects" and "Copying, moving, and renaming objects" for the 5 GB
that one PutObject or CopyObject may write.
"""

from __future__ import annotations

MiB = 1024 * 1024
GiB = 1024 * MiB

MAX_PARTS = 10_000  # parts per multipart upload
MIN_PART_SIZE = 5 * MiB  # every part but the last
MAX_PART_SIZE = 5 * GiB
MAX_OBJECT_SIZE = MAX_PARTS * MAX_PART_SIZE  # 48.8 TiB
MAX_SINGLE_WRITE_SIZE = 5 * GiB  # the largest object one PutObject, or one CopyObject, may write


def part_count(size: int, part_size: int) -> int:
    """How many parts of part_size bytes hold size bytes (the last one may be shorter)."""
    return -(-size // part_size)


def part_size_for(size: int, wanted: int) -> int:
    """The part size for an object of `size` bytes: `wanted`, or the smallest larger size that needs at most
    MAX_PARTS parts. Not s3transfer's ChunksizeAdjuster: that one doubles the size until the parts fit, up to twice
    the memory per part buffer; this one stays between 5 MiB and 5 GiB for any wanted size in that range and any
    object S3 can hold."""
    return max(wanted, part_count(size, MAX_PARTS))
