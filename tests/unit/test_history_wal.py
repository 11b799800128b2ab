"""The history's write-ahead log: round trips, torn tails at every byte, corruption,
idempotent reads, rotation, release and quota."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petra.history import Samples, SignalTable, Wal, crc32c, read_segment, scan_segment
from petra.history._wal import REC_HEADER, SEG_HEADER, encode_header, encode_record

TABLE = SignalTable(("a", "b", "c"), (3, 2, 1), "t", 42)


def make(n: int, base: int = 0, rng: np.random.Generator | None = None) -> Samples:
    rng = rng or np.random.default_rng(base)
    return Samples(
        rng.integers(0, 3, n).astype(np.uint32),
        rng.integers(0, 2**64, n, dtype=np.uint64),
        rng.integers(0, 3, n).astype(np.uint8),
        rng.integers(0, 8, n).astype(np.uint8),
        np.arange(base, base + n, dtype=np.int64) * 1000,
        rng.integers(-(2**62), 2**62, n, dtype=np.int64))


def same(a: Samples, b: Samples) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f))
               for f in ("sig", "value", "quality", "substatus", "ts", "wts"))


def read_all(wal: Wal, start: int = 0, step: int = 10_000) -> tuple[list[int], Samples]:
    seqs: list[int] = []
    parts: list[Samples] = []
    pos = start
    while True:
        got = wal.read(pos, step)
        if got is None:
            break
        seqs.extend(range(got.first_seq, got.end_seq))
        parts.append(got.samples)
        pos = got.end_seq
    return seqs, Samples.concat(parts)


def test_crc32c_is_castagnoli() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value


batches = st.lists(st.integers(1, 300), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=batches, seg_kib=st.sampled_from([64, 128]), cache=st.sampled_from([0, 500]))
def test_round_trip(tmp_path: Path, sizes: list[int], seg_kib: int, cache: int) -> None:
    d = tmp_path / f"w{len(sizes)}-{seg_kib}-{cache}-{sum(sizes)}"
    shutil.rmtree(d, ignore_errors=True)
    wal = Wal(d, segment_bytes=seg_kib * 1024, fsync="off", cache_samples=cache,
              quota_bytes=1 << 30)
    wal.open()
    written: list[Samples] = []
    base = 0
    for k, n in enumerate(sizes):
        s = make(n, base)
        assert wal.append(s, TABLE, jpos=k) == base
        written.append(s)
        base += n
    seqs, got = read_all(wal)
    assert seqs == list(range(base))
    assert same(got, Samples.concat(written))
    wal.close()
    again = Wal(d)
    rec = again.open()
    assert (rec.next_seq, rec.first_seq, rec.last_jpos, rec.torn_bytes) == (
        base, 0, len(sizes) - 1, 0)
    seqs, got = read_all(again, step=77)
    assert seqs == list(range(base)) and same(got, Samples.concat(written))
    # reading from any position gives the same samples (replay is idempotent)
    for pos in (0, base // 3, base - 1):
        first = again.read(pos, 50)
        second = again.read(pos, 50)
        assert first is not None and second is not None
        assert first.first_seq == pos and same(first.samples, second.samples)


def _segment_file(tmp_path: Path) -> tuple[Path, list[tuple[int, int]], list[Samples]]:
    """A segment of five records; returns its path, (end offset, end seq) per record."""
    wal = Wal(tmp_path / "src", fsync="off")
    wal.open()
    parts = []
    for k, n in enumerate((3, 1, 4, 2, 5)):
        s = make(n, k * 10)
        wal.append(s, TABLE, jpos=100 + k)
        parts.append(s)
    wal.close()
    (path,) = wal.segment_paths()
    scan = scan_segment(path)
    assert scan is not None
    ends = []
    seq = 0
    for off, n in zip([*scan.offsets[1:], scan.end_offset], scan.counts, strict=True):
        seq += n
        ends.append((off, seq))
    return path, ends, parts


def test_truncation_at_every_byte_keeps_exactly_the_complete_records(tmp_path: Path) -> None:
    path, ends, parts = _segment_file(tmp_path)
    raw = path.read_bytes()
    header_len = SEG_HEADER.size + len(TABLE.to_json())  # padding after it is optional
    for cut in range(len(raw) + 1):
        d = tmp_path / "cut"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        p = d / path.name
        p.write_bytes(raw[:cut])
        complete = [k for k, (end, _) in enumerate(ends) if end <= cut]
        got = read_segment(p)
        if cut < header_len:
            assert got is None, cut  # the header itself is torn: no data at all
            continue
        assert got is not None, cut
        table, records = got
        assert table == TABLE
        assert [r.first_seq for r in records] == [0, 3, 4, 8, 10][:len(complete)]
        for r, k in zip(records, complete, strict=True):
            assert same(r.samples, parts[k]) and r.jpos == 100 + k
        # opening the log cuts the torn tail and appends after the last good record
        wal = Wal(d, fsync="off")
        rec = wal.open()
        n_ok = ends[len(complete) - 1][1] if complete else 0
        assert rec.next_seq == n_ok, cut
        wal.append(make(2, 999), TABLE, jpos=7)
        wal.close()
        again = Wal(d)
        again.open()
        seqs, _ = read_all(again, 0)
        assert seqs == list(range(n_ok + 2)), cut


def test_a_flipped_bit_ends_the_segment_there_and_older_segments_are_skipped(
        tmp_path: Path) -> None:
    wal = Wal(tmp_path, fsync="off", segment_bytes=64 * 1024)
    wal.open()
    for k in range(4):
        wal.append(make(10, k * 10), TABLE, jpos=k)
    wal.rotate()
    wal.append(make(5, 40), TABLE, jpos=9)
    wal.close()
    first, _ = wal.segment_paths()
    scan = scan_segment(first)
    assert scan is not None
    raw = bytearray(first.read_bytes())
    raw[scan.offsets[2] + REC_HEADER.size + 5] ^= 0x10  # inside the third record
    first.write_bytes(bytes(raw))
    again = Wal(tmp_path)
    rec = again.open()
    assert rec.corrupt_samples_segments == 1 and rec.torn_bytes == 0
    seqs, _ = read_all(again)
    assert seqs == list(range(20)) + list(range(40, 45))  # 20..39 unreadable, counted


def test_a_header_from_another_format_is_not_read(tmp_path: Path) -> None:
    p = tmp_path / "00000000000000000000.wal"
    hdr = bytearray(encode_header(TABLE, 0))
    hdr[SEG_HEADER.size + 2] ^= 1  # the meta no longer matches its CRC
    p.write_bytes(bytes(hdr) + encode_record(make(3), 0, 1))
    assert read_segment(p) is None


def test_reads_stop_at_the_durable_position_and_sync_moves_it(tmp_path: Path) -> None:
    wal = Wal(tmp_path, fsync="interval")
    wal.open()
    wal.append(make(10), TABLE, jpos=1)
    assert wal.read(0, 100) is None  # written, not yet fsynced
    assert wal.sync() == 10
    got = wal.read(0, 100)
    assert got is not None and (got.first_seq, got.end_seq) == (0, 10)


def test_release_quota_and_backlog_bytes(tmp_path: Path) -> None:
    wal = Wal(tmp_path, fsync="off", segment_bytes=64 * 1024, quota_bytes=300 * 1024)
    wal.open()
    for k in range(12):
        wal.append(make(1000, k * 1000), TABLE, jpos=k)  # ~30 KB a record
    paths = wal.segment_paths()
    assert len(paths) >= 4
    assert wal.bytes_after(0) == pytest.approx(wal.total_bytes, rel=0.01)
    assert wal.bytes_after(wal.next_seq) == 0
    freed = wal.release(3000)
    assert freed > 0 and wal.first_seq >= 2000
    assert not paths[0].exists()
    while wal.over_quota():
        assert wal.drop_oldest() is not None
    assert wal.total_bytes <= 300 * 1024
    got = wal.read(0, 10)  # before the oldest held: starts at the oldest one
    assert got is not None and got.first_seq == wal.first_seq > 0


def test_open_never_reuses_a_confirmed_sequence_number(tmp_path: Path) -> None:
    wal = Wal(tmp_path, fsync="off")
    wal.open()
    wal.append(make(5), TABLE, jpos=1)
    wal.close()
    again = Wal(tmp_path, fsync="off")
    assert again.open(min_next_seq=50).next_seq == 50  # a destination had 50
    assert again.append(make(2), TABLE, jpos=2) == 50
    again.sync()
    seqs, _ = read_all(again)
    assert seqs == [0, 1, 2, 3, 4, 50, 51]


def test_another_signal_table_starts_a_new_segment(tmp_path: Path) -> None:
    wal = Wal(tmp_path, fsync="off")
    wal.open()
    wal.append(make(3), TABLE, jpos=1)
    other = SignalTable(("x",), (3,), "t", 43)
    wal.append(Samples(np.zeros(2, np.uint32), np.zeros(2, np.uint64), np.zeros(2, np.uint8),
                       np.zeros(2, np.uint8), np.zeros(2, np.int64), np.zeros(2, np.int64)),
               other, jpos=2)
    assert len(wal.segment_paths()) == 2
    a = wal.read(0, 100)
    b = wal.read(3, 100)
    assert a is not None and b is not None
    assert (a.table, a.end_seq, b.table, b.end_seq) == (TABLE, 3, other, 5)


def test_journal_seek_resumes_at_a_saved_position_and_counts_what_the_ring_lost() -> None:
    import os

    from petra.errors import ValueOutOfRangeError
    from petra.shm import JournalConsumer, Segment, SignalDef, SignalType

    seg = Segment.create(f"hseek{os.getpid()}", [SignalDef("x", SignalType.INT)],
                         journal_capacity=64)
    try:
        for i in range(10):
            seg.write("x", i)
        c = JournalConsumer(seg)
        c.seek(4)
        assert c.read().decoded() == [4, 5, 6, 7, 8, 9] and c.lost == 0
        for i in range(100):
            seg.write("x", 100 + i)
        c.seek(10)  # 10..45 are gone from a 64-entry ring holding 46..109
        got = c.read()
        assert c.lost == 36 and got.decoded()[0] == 136
        with pytest.raises(ValueOutOfRangeError):
            c.seek(10_000)
    finally:
        seg.close()
        seg.unlink()
