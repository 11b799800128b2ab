"""The write-ahead log: every recorded sample is on disk here before any destination
sees it.

Why a log of our own
--------------------
The journal in the shared segment is a ring: it forgets. Parquet files are written
minutes apart and ClickHouse may be away for hours. Between the two sits this log: an
append-only sequence of records on local disk, each sample numbered, so that after a
crash (of the history process, or the box) every destination can carry on from the
last sample *it* confirmed, and nothing is lost or written twice.

Files
-----
``wal/<first_seq, 20 digits>.wal``, one *segment* at a time being appended to. A
segment starts with a header::

    0   8  magic "PETRAWAL"
    8   2  version (1)          10  2  flags (0)
    12  4  meta_len             16  8  first_seq (sequence number of its first sample)
    24  4  CRC32C of bytes 0..24 and the meta    28  4  reserved (0)
    32  meta_len  JSON: instance, segment_created_ns, signals [[name, type], ...]
    ..  zero padding to a multiple of 8

then records, each::

    0   4  CRC32C of bytes 4..24 and the payload
    4   4  n, samples in the record (1 .. 2**20)
    8   8  first_seq of the record (= the previous record's first_seq + n)
    16  8  jpos: the journal position just after the entries this record came from
    24  ..  payload, columns of n samples: value u64, ts i64, wts i64, sig u32,
           quality u8, substatus u8; zero padding to a multiple of 8

All integers little-endian. The signal table lives in the segment header, so records
carry 4-byte indices, never names; a plant with other signals starts a new segment.

Crash rules
-----------
- A record is valid only if it is complete, its CRC matches and its ``first_seq``
  continues the previous one. Reading stops at the first invalid record: after a
  crash mid-write that is the torn tail, which :meth:`Wal.open` cuts off (truncates)
  before appending again. Never is a partial record read as data.
- An invalid record *followed by more bytes* in an older segment is corruption, not a
  torn tail: the rest of that segment is counted lost and logged, and reading goes on
  with the next segment.
- ``fsync``: ``batch`` makes each append durable before the next; ``interval`` every
  ``fsync_interval_s``; ``off`` leaves it to the kernel. Destinations read only what
  has been fsynced (``synced_seq``), so a destination can never hold a sample that a
  power cut takes back out of the log. A kill -9 loses nothing that ``write`` returned
  for: the page cache survives the process.
- Sequence numbers are never reused: on open, the next number is at least every
  destination's confirmed position (a log that lost its tail to a power cut with
  ``fsync: off`` leaves a gap, never a second meaning for a number).
- A segment is deleted once every destination has confirmed all of it, or, past
  ``quota_bytes``, when it is the oldest: what the lagging destinations had not taken
  from it is counted lost for them (the disk quota alarm).
- A full disk (ENOSPC) makes :meth:`Wal.append` cut its partial write back off and
  raise :class:`WalFullError`; the caller holds the samples and tries again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import numpy.typing as npt

from petra.errors import PetraError
from petra.history._samples import Samples, SignalTable

log = logging.getLogger("petra.history.wal")

MAGIC = b"PETRAWAL"
VERSION = 1
SEG_HEADER = struct.Struct("<8sHHIQII")
REC_HEADER = struct.Struct("<IIQQ")
SAMPLE_BYTES = 30
MAX_RECORD_SAMPLES = 1 << 20
SUFFIX = ".wal"
CACHE_SAMPLES = 1 << 18  # recent records kept in memory for destinations that keep up


class WalError(PetraError):
    """The write-ahead log cannot be used (unreadable directory, I/O error)."""


class WalFullError(WalError):
    """An append did not fit on the disk (ENOSPC/EDQUOT); nothing of it was kept."""


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli), hardware-accelerated by google-crc32c."""
    return int(google_crc32c.extend(crc, data))


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def encode_header(table: SignalTable, first_seq: int) -> bytes:
    meta = table.to_json()
    head = SEG_HEADER.pack(MAGIC, VERSION, 0, len(meta), first_seq, 0, 0)
    crc = crc32c(meta, crc32c(head[:24]))
    head = SEG_HEADER.pack(MAGIC, VERSION, 0, len(meta), first_seq, crc, 0)
    raw = head + meta
    return raw + bytes(_pad8(len(raw)) - len(raw))


def encode_record(s: Samples, first_seq: int, jpos: int) -> bytes:
    """One record holding ``s`` (1 .. 2**20 samples)."""
    n = len(s)
    if not 1 <= n <= MAX_RECORD_SAMPLES:
        raise ValueError(f"a record holds 1..{MAX_RECORD_SAMPLES} samples, got {n}")
    payload = b"".join((
        np.ascontiguousarray(s.value, "<u8").tobytes(),
        np.ascontiguousarray(s.ts, "<i8").tobytes(),
        np.ascontiguousarray(s.wts, "<i8").tobytes(),
        np.ascontiguousarray(s.sig, "<u4").tobytes(),
        np.ascontiguousarray(s.quality, "u1").tobytes(),
        np.ascontiguousarray(s.substatus, "u1").tobytes(),
        bytes(_pad8(n * SAMPLE_BYTES) - n * SAMPLE_BYTES),
    ))
    body = REC_HEADER.pack(0, n, first_seq, jpos)[4:]
    crc = crc32c(payload, crc32c(body))
    return struct.pack("<I", crc) + body + payload


def decode_payload(payload: bytes, n: int) -> Samples:
    o = 0

    def col(dtype: str, size: int) -> npt.NDArray[Any]:
        nonlocal o
        a = np.frombuffer(payload, dtype, n, o)
        o += size * n
        return a

    value = col("<u8", 8)
    ts = col("<i8", 8)
    wts = col("<i8", 8)
    sig = col("<u4", 4)
    quality = col("u1", 1)
    substatus = col("u1", 1)
    return Samples(sig.astype(np.uint32), value.astype(np.uint64), quality, substatus,
                   ts.astype(np.int64), wts.astype(np.int64))


@dataclass(slots=True)
class Record:
    """A record read back: its sequence range, journal position and samples."""

    first_seq: int
    jpos: int
    samples: Samples

    @property
    def end_seq(self) -> int:
        return self.first_seq + len(self.samples)


@dataclass
class SegmentScan:
    """What reading one segment file found."""

    path: Path
    table: SignalTable
    first_seq: int
    header_len: int
    offsets: list[int] = field(default_factory=list)  # of each valid record
    seqs: list[int] = field(default_factory=list)  # first_seq of each valid record
    counts: list[int] = field(default_factory=list)
    end_offset: int = 0  # end of the last valid record
    end_seq: int = 0  # one past the last valid sample
    last_jpos: int = 0
    file_size: int = 0  # bytes in the file (more than end_offset: torn or corrupt)

    @property
    def bad_bytes(self) -> int:
        """Bytes after the last valid record (a file cut inside the header's padding
        has none)."""
        return max(0, self.file_size - self.end_offset)


def read_header(fd: int, path: Path) -> tuple[SignalTable, int, int] | None:
    """(table, first_seq, header length) of a segment, or None when the header is
    missing, short or fails its CRC (a segment cut during creation)."""
    raw = os.pread(fd, SEG_HEADER.size, 0)
    if len(raw) < SEG_HEADER.size:
        return None
    magic, version, _flags, meta_len, first_seq, crc, _ = SEG_HEADER.unpack(raw)
    if magic != MAGIC or version != VERSION or meta_len > 16 << 20:
        return None
    meta = os.pread(fd, meta_len, SEG_HEADER.size)
    if len(meta) < meta_len or crc32c(meta, crc32c(raw[:24])) != crc:
        return None
    try:
        table = SignalTable.from_json(meta)
    except (ValueError, KeyError, TypeError, IndexError):
        log.error("event=wal_bad_meta path=%s", path)
        return None
    return table, first_seq, _pad8(SEG_HEADER.size + meta_len)


def iter_records(fd: int, scan: SegmentScan, *, decode: bool) -> Iterator[Record | None]:
    """Walk the records of a segment from its header on, filling ``scan``; yields each
    valid record (or None when ``decode`` is false) and stops at the first invalid one."""
    off = scan.header_len
    expect = scan.first_seq
    size = scan.file_size
    while off + REC_HEADER.size <= size:
        head = os.pread(fd, REC_HEADER.size, off)
        if len(head) < REC_HEADER.size:
            break
        crc, n, first, jpos = REC_HEADER.unpack(head)
        if not 1 <= n <= MAX_RECORD_SAMPLES or first != expect:
            break
        plen = _pad8(n * SAMPLE_BYTES)
        if off + REC_HEADER.size + plen > size:
            break
        payload = os.pread(fd, plen, off + REC_HEADER.size)
        if len(payload) < plen or crc32c(payload, crc32c(head[4:])) != crc:
            break
        scan.offsets.append(off)
        scan.seqs.append(first)
        scan.counts.append(n)
        off += REC_HEADER.size + plen
        expect = first + n
        scan.last_jpos = jpos
        yield Record(first, jpos, decode_payload(payload, n)) if decode else None
    scan.end_offset = off
    scan.end_seq = expect


def scan_segment(path: Path, *, records: list[Record] | None = None) -> SegmentScan | None:
    """Index a segment file (and decode its records into ``records`` when given).
    None when its header is unusable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        hdr = read_header(fd, path)
        if hdr is None:
            return None
        table, first_seq, hlen = hdr
        scan = SegmentScan(path, table, first_seq, hlen, file_size=os.fstat(fd).st_size)
        for rec in iter_records(fd, scan, decode=records is not None):
            if records is not None and rec is not None:
                records.append(rec)
        return scan
    finally:
        os.close(fd)


def read_segment(path: Path) -> tuple[SignalTable, list[Record]] | None:
    """Every valid record of a segment file, in order (tools and tests)."""
    records: list[Record] = []
    scan = scan_segment(path, records=records)
    return None if scan is None else (scan.table, records)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


@dataclass
class Recovery:
    """What :meth:`Wal.open` found on disk."""

    next_seq: int  # the sequence number the next sample gets
    first_seq: int  # the oldest sample still held
    last_jpos: int  # journal position saved with the last record (0: none)
    last_table: SignalTable | None  # signal table of the newest segment
    segments: int
    torn_bytes: int  # cut off the newest segment's tail
    corrupt_samples_segments: int  # older segments whose rest was unreadable


@dataclass(slots=True)
class WalRead:
    """Samples handed to a destination: ``first_seq``.. and the table they use.
    Sequence numbers within a read are contiguous."""

    first_seq: int
    samples: Samples
    table: SignalTable

    @property
    def end_seq(self) -> int:
        return self.first_seq + len(self.samples)


class _Segment:
    """A segment as the log keeps it in memory: its index, for readers."""

    __slots__ = ("counts", "end_seq", "first_seq", "last_jpos", "offsets", "path", "seqs",
                 "size", "table")

    def __init__(self, scan: SegmentScan) -> None:
        self.path = scan.path
        self.table = scan.table
        self.first_seq = scan.first_seq
        self.seqs = scan.seqs
        self.offsets = scan.offsets
        self.counts = scan.counts
        self.end_seq = scan.end_seq
        self.size = scan.end_offset
        self.last_jpos = scan.last_jpos


class Wal:
    """One directory of segments: append, sync, read from any sequence number, release.

    Threads: appends, rotation and release come from one thread (the sink's loop);
    :meth:`sync` and :meth:`read` may run on worker threads at the same time."""

    def __init__(self, directory: Path, *, segment_bytes: int = 64 << 20,
                 segment_max_age_s: float = 600.0, fsync: str = "interval",
                 quota_bytes: int = 1 << 30, clock: Callable[[], float] = time.monotonic,
                 cache_samples: int = CACHE_SAMPLES) -> None:
        self.dir = directory
        self.segment_bytes = segment_bytes
        self.segment_max_age_s = segment_max_age_s
        self.fsync_policy = fsync
        self.quota_bytes = quota_bytes
        self.clock = clock
        self._segments: list[_Segment] = []
        self._lock = threading.Lock()  # the segment list and indices
        self._sync_lock = threading.Lock()  # the active fd against a concurrent fsync
        self._fd = -1
        self._active: _Segment | None = None
        self._opened_at = 0.0
        self._next_seq = 0
        self._written_seq = 0  # one past the last sample whose write() returned
        self._synced_seq = 0  # one past the last sample known durable
        self._cache: deque[tuple[int, Samples, SignalTable]] = deque()
        self._cache_n = 0
        self._cache_max = cache_samples
        self.corrupt_segments = 0

    # ------------------------------------------------------------------ open / close
    def open(self, min_next_seq: int = 0) -> Recovery:
        """Index every segment, cut the newest one's torn tail, and get ready to append.
        ``min_next_seq``: the highest position any destination has confirmed."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            paths = sorted(p for p in self.dir.iterdir() if p.suffix == SUFFIX)
        except OSError as exc:
            raise WalError(f"cannot use WAL directory {self.dir}: {exc.strerror}") from None
        segs: list[_Segment] = []
        torn = 0
        for k, path in enumerate(paths):
            last = k == len(paths) - 1
            scan = scan_segment(path)
            if scan is None:
                log.warning("event=wal_segment_unusable path=%s action=%s", path,
                            "removed" if last else "skipped")
                if last:
                    path.unlink()
                continue
            if scan.bad_bytes:
                if last:
                    torn = scan.bad_bytes
                    log.warning("event=wal_torn_tail path=%s cut_bytes=%d end_seq=%d",
                                path, torn, scan.end_seq)
                    with open(path, "r+b") as fh:
                        fh.truncate(scan.end_offset)
                        os.fsync(fh.fileno())
                else:
                    self.corrupt_segments += 1
                    log.error("event=wal_corrupt path=%s unreadable_bytes=%d valid_until_seq=%d",
                              path, scan.bad_bytes, scan.end_seq)
            segs.append(_Segment(scan))
        self._segments = segs
        self._cache.clear()
        self._cache_n = 0
        end = max((s.end_seq for s in segs), default=0)
        self._next_seq = self._written_seq = self._synced_seq = max(end, min_next_seq)
        newest = next((s for s in reversed(segs) if s.seqs), None)
        return Recovery(next_seq=self._next_seq, first_seq=self.first_seq,
                        last_jpos=newest.last_jpos if newest is not None else 0,
                        last_table=newest.table if newest is not None else None,
                        segments=len(segs), torn_bytes=torn,
                        corrupt_samples_segments=self.corrupt_segments)

    def close(self) -> None:
        """Make everything durable and close the active segment."""
        with self._sync_lock:
            if self._fd >= 0:
                if self.fsync_policy != "off":
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
        self._synced_seq = self._written_seq
        self._active = None

    # ------------------------------------------------------------------ appending
    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def synced_seq(self) -> int:
        """One past the last sample that is durable; destinations read below it."""
        return self._synced_seq

    @property
    def first_seq(self) -> int:
        """The oldest sample the log still holds (== next_seq when empty)."""
        with self._lock:
            for s in self._segments:
                if s.end_seq > s.first_seq:
                    return s.first_seq
        return self._next_seq

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments)

    def append(self, samples: Samples, table: SignalTable, jpos: int) -> int:
        """Append ``samples`` (any number; split into records of at most 2**20) and
        return the first sequence number given to them. Raises :class:`WalFullError`
        when the disk is full: nothing of this append is then kept."""
        n = len(samples)
        first = self._next_seq
        if n == 0:
            return first
        self._maybe_rotate(table)
        assert self._active is not None
        seg = self._active
        chunks = [encode_record(samples.take(slice(a, min(n, a + MAX_RECORD_SAMPLES))),
                                first + a, jpos)
                  for a in range(0, n, MAX_RECORD_SAMPLES)]
        start = seg.size
        try:
            self._write_all(b"".join(chunks) if len(chunks) > 1 else chunks[0])
        except OSError as exc:
            self._cut_back(start)
            if _is_full(exc):
                raise WalFullError(f"WAL disk full at {self.dir}") from None
            raise WalError(f"WAL write failed: {exc.strerror}") from None
        off = start
        seq = first
        with self._lock:
            for a, rec in zip(range(0, n, MAX_RECORD_SAMPLES), chunks, strict=True):
                cnt = min(MAX_RECORD_SAMPLES, n - a)
                seg.offsets.append(off)
                seg.seqs.append(seq)
                seg.counts.append(cnt)
                off += len(rec)
                seq += cnt
            seg.size = off
            seg.end_seq = seq
            seg.last_jpos = jpos
        self._next_seq = self._written_seq = seq
        if self.fsync_policy == "off":
            self._synced_seq = seq
        self._remember(first, samples, table)
        return first

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            k = os.write(self._fd, view)
            view = view[k:]

    def _cut_back(self, size: int) -> None:
        """Remove a partial append (truncating frees space even on a full disk)."""
        try:
            os.ftruncate(self._fd, size)
            os.lseek(self._fd, size, os.SEEK_SET)
        except OSError as exc:  # the file is now longer than its index: reopen cuts it
            log.error("event=wal_cut_back_failed error=%s", exc.strerror)
            raise WalError(f"WAL could not undo a partial write: {exc.strerror}") from None

    def _maybe_rotate(self, table: SignalTable) -> None:
        seg = self._active
        if seg is not None and seg.table.same_signals(table) and (
                seg.table.segment_created_ns == table.segment_created_ns) and (
                seg.size < self.segment_bytes) and (
                self.clock() - self._opened_at < self.segment_max_age_s):
            return
        self._new_segment(table)

    def rotate(self) -> None:
        """Close the active segment (the next append starts a new one)."""
        with self._sync_lock:
            if self._fd >= 0:
                if self.fsync_policy != "off":
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
        self._synced_seq = max(self._synced_seq, self._written_seq)
        self._active = None

    def _new_segment(self, table: SignalTable) -> None:
        self.rotate()
        first = self._next_seq
        path = self.dir / f"{first:020d}{SUFFIX}"
        header = encode_header(table, first)
        fd = -1
        try:
            # A leftover file of this name holds no valid sample (open() indexed it):
            # replace it.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
            view = memoryview(header)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            _fsync_dir(self.dir)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            if _is_full(exc):
                raise WalFullError(f"WAL disk full at {self.dir}") from None
            raise WalError(f"cannot create WAL segment {path}: {exc.strerror}") from None
        scan = SegmentScan(path, table, first, len(header), end_offset=len(header),
                           end_seq=first)
        seg = _Segment(scan)
        with self._lock:
            self._segments = [s for s in self._segments if s.path != path] + [seg]
        with self._sync_lock:
            self._fd = fd
        self._active = seg
        self._opened_at = self.clock()
        log.info("event=wal_segment_open path=%s first_seq=%d", path.name, first)

    def sync(self) -> int:
        """fsync what was written; returns the new ``synced_seq``. Thread-safe."""
        upto = self._written_seq
        if upto <= self._synced_seq:
            return self._synced_seq
        with self._sync_lock:
            if self._fd >= 0:
                os.fdatasync(self._fd)
        self._synced_seq = max(self._synced_seq, upto)
        return self._synced_seq

    # ------------------------------------------------------------------ reading
    def _remember(self, first: int, samples: Samples, table: SignalTable) -> None:
        if self._cache_max <= 0:
            return
        self._cache.append((first, samples.copy(), table))
        self._cache_n += len(samples)
        while self._cache_n > self._cache_max and len(self._cache) > 1:
            _, old, _ = self._cache.popleft()
            self._cache_n -= len(old)

    def read(self, from_seq: int, max_samples: int) -> WalRead | None:
        """Up to ``max_samples`` durable samples from ``from_seq`` on, within one
        segment (one signal table). If ``from_seq`` is below the oldest sample held
        (released, dropped by the quota) the read starts at the oldest one: compare
        ``first_seq`` of the result. None when nothing durable is there yet."""
        limit = self._synced_seq
        from_seq = max(from_seq, self.first_seq)  # released or dropped: from the oldest
        if from_seq >= limit:
            return None
        got = self._from_cache(from_seq, max_samples, limit)
        if got is not None:
            return got
        with self._lock:
            segs = list(self._segments)
        for seg in segs:
            if seg.end_seq <= from_seq or not seg.seqs:
                continue
            try:
                return self._read_segment(seg, max(from_seq, seg.first_seq), max_samples,
                                          limit)
            except FileNotFoundError:  # dropped under us by the quota: try the next
                continue
        return None

    def _from_cache(self, from_seq: int, max_samples: int, limit: int) -> WalRead | None:
        """The samples from ``from_seq`` out of the recent-records cache, across
        consecutive records of one table; None when the cache does not start early
        enough (the caller reads the files)."""
        cache = list(self._cache)
        if not cache or from_seq < cache[0][0]:
            return None
        parts: list[Samples] = []
        table: SignalTable | None = None
        want = from_seq
        total = 0
        for first, s, tab in cache:
            end = first + len(s)
            if want >= end:
                continue
            if want < first or (table is not None and tab is not table) or first >= limit:
                break  # a gap, another table, or not durable yet
            a = want - first
            b = min(len(s), a + max_samples - total, limit - first)
            if b <= a:
                break
            parts.append(s.take(slice(a, b)))
            table = tab
            total += b - a
            want = first + b
            if total >= max_samples:
                break
        if table is None:
            return None
        return WalRead(from_seq, Samples.concat(parts), table)

    def _read_segment(self, seg: _Segment, from_seq: int, max_samples: int,
                      limit: int) -> WalRead | None:
        with self._lock:
            k = int(np.searchsorted(seg.seqs, from_seq, side="right")) - 1
            k = max(k, 0)
            recs = [(seg.seqs[i], seg.offsets[i], seg.counts[i])
                    for i in range(k, len(seg.seqs))]
        parts: list[Samples] = []
        start = None
        total = 0
        fd = os.open(seg.path, os.O_RDONLY)
        try:
            for first, off, n in recs:
                if first >= limit or total >= max_samples:
                    break
                plen = _pad8(n * SAMPLE_BYTES)
                payload = os.pread(fd, plen, off + REC_HEADER.size)
                s = decode_payload(payload, n)
                a = max(0, from_seq - first)
                b = min(n, limit - first, a + max_samples - total)
                if start is None:
                    start = first + a
                parts.append(s.take(slice(a, b)))
                total += b - a
        finally:
            os.close(fd)
        if start is None or total == 0:
            return None
        return WalRead(start, Samples.concat(parts), seg.table)

    # ------------------------------------------------------------------ releasing
    def release(self, confirmed_seq: int) -> int:
        """Delete every closed segment whose samples are all below ``confirmed_seq``
        (the lowest position every destination confirmed). Returns bytes freed."""
        freed = 0
        with self._lock:
            keep: list[_Segment] = []
            drop: list[_Segment] = []
            for s in self._segments:
                if s is not self._active and s.end_seq <= confirmed_seq:
                    drop.append(s)
                else:
                    keep.append(s)
            self._segments = keep
        for s in drop:
            freed += s.size
            with contextlib.suppress(FileNotFoundError):
                s.path.unlink()
            log.info("event=wal_segment_released path=%s end_seq=%d", s.path.name, s.end_seq)
        return freed

    def over_quota(self) -> bool:
        return self.total_bytes > self.quota_bytes

    def drop_oldest(self) -> tuple[int, int] | None:
        """Delete the oldest closed segment (quota); returns its sequence range, or None
        when only the active segment is left."""
        with self._lock:
            cand = [s for s in self._segments if s is not self._active]
            if not cand:
                return None
            seg = cand[0]
            self._segments = [s for s in self._segments if s is not seg]
        with contextlib.suppress(FileNotFoundError):
            seg.path.unlink()
        log.error("event=wal_quota_drop path=%s first_seq=%d end_seq=%d bytes=%d",
                  seg.path.name, seg.first_seq, seg.end_seq, seg.size)
        return seg.first_seq, seg.end_seq

    def bytes_after(self, seq: int) -> int:
        """Bytes of the records holding samples at or after ``seq`` (a destination's
        backlog on disk)."""
        total = 0
        with self._lock:
            for s in self._segments:
                if s.end_seq <= seq or not s.seqs:
                    continue
                if s.first_seq >= seq:
                    total += s.size - s.offsets[0]
                else:
                    k = max(0, int(np.searchsorted(s.seqs, seq, side="right")) - 1)
                    total += s.size - s.offsets[k]
        return total

    def segment_paths(self) -> list[Path]:
        with self._lock:
            return [s.path for s in self._segments]
