"""Which partition a channel's jobs go to, and the partitions' feed names."""

from __future__ import annotations

import pytest

from realtime_glue.balancer import fair_share
from realtime_glue.partitions import job_channel, partition_feed_names, partition_of


def crc32_bitwise(data: bytes) -> int:
    """CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) written out, as a producer in
    another language without a library would: the partition must not depend on zlib."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_the_partition_is_crc32_of_the_utf8_channel_mod_n_as_other_languages_compute_it():
    # The CRC-32 check value of the CRC catalogue: Go's crc32.ChecksumIEEE, PHP's crc32,
    # Java's CRC32 and Node's zlib.crc32 all give it.
    assert crc32_bitwise(b"123456789") == 0xCBF43926
    assert partition_of("123456789", 8) == 0xCBF43926 % 8 == 6
    assert partition_of("article-42", 8) == crc32_bitwise(b"article-42") % 8 == 2
    # UTF-8 bytes, not code points: "café" is 5 bytes.
    assert partition_of("café", 16) == crc32_bitwise("café".encode()) % 16
    assert partition_of("anything", 1) == 0


def test_a_channel_always_gets_the_same_partition_and_channels_spread_over_all():
    channels = [f"article-{n}" for n in range(1000)]
    first = [partition_of(c, 8) for c in channels]
    assert first == [partition_of(c, 8) for c in channels]
    counts = [first.count(p) for p in range(8)]
    assert min(counts) > 80, counts  # 125 each if perfectly even


def test_one_partition_keeps_the_feeds_own_name_more_are_numbered():
    assert partition_feed_names("comments", 1) == ["comments"]
    assert partition_feed_names("comments", 3) == ["comments.0", "comments.1", "comments.2"]
    with pytest.raises(ValueError):
        partition_feed_names("comments", 0)


def test_the_channel_is_read_from_the_jobs_envelope():
    assert job_channel('{"channel": "news", "event": "e", "data": {}}') == "news"
    assert job_channel(b'{"channel": "caf\\u00e9"}') == "café"
    for bad in ("not json", "[1]", '{"event": "e"}', '{"channel": ""}', '{"channel": 5}'):
        with pytest.raises(ValueError, match="channel"):
            job_channel(bad)


@pytest.mark.parametrize(
    ("partitions", "live", "share"), [(8, 1, 8), (8, 2, 4), (8, 3, 3), (8, 5, 2), (8, 9, 1), (1, 3, 1)]
)
def test_an_instance_holds_at_most_ceil_n_over_live(partitions, live, share):
    assert fair_share(partitions, live) == share
    assert fair_share(partitions, live) * live >= partitions  # the live ones can hold them all
