"""The part arithmetic that keeps multipart uploads and copies within S3's limits (s3_limits.py)."""

from __future__ import annotations

import pytest

from bls_pipeline.s3_limits import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    MiB,
    part_count,
    part_size_for,
)


def test_a_file_within_10000_parts_keeps_the_configured_part_size() -> None:
    assert part_size_for(MAX_PARTS * 8 * MiB, 8 * MiB) == 8 * MiB
    assert part_size_for(1, 8 * MiB) == 8 * MiB


def test_a_file_that_would_need_more_than_10000_parts_gets_the_smallest_part_size_that_fits() -> None:
    size = MAX_PARTS * 8 * MiB + 1  # one byte more than 10,000 parts of 8 MiB hold
    part_size = part_size_for(size, 8 * MiB)
    assert part_size == 8 * MiB + 1
    assert part_count(size, part_size) == MAX_PARTS
    assert part_count(size, part_size - 1) > MAX_PARTS


@pytest.mark.parametrize("wanted", [MIN_PART_SIZE, 8 * MiB, 512 * MiB, MAX_PART_SIZE])
@pytest.mark.parametrize("size", [0, 1, MIN_PART_SIZE, 80 * 1024 * MiB, 5 * 1024**4, MAX_OBJECT_SIZE - 1, MAX_OBJECT_SIZE])
def test_part_sizes_stay_within_s3s_limits_for_any_object_s3_can_hold(size, wanted) -> None:
    part_size = part_size_for(size, wanted)
    assert MIN_PART_SIZE <= part_size <= MAX_PART_SIZE
    assert part_count(size, part_size) <= MAX_PARTS


def test_part_count_rounds_up() -> None:
    assert [part_count(size, 5) for size in (0, 1, 5, 6, 10, 11)] == [0, 1, 1, 2, 2, 3]
