"""kpageflags / kpagecount reading and per-pfn classification on real dumps."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from fragsim.errors import ParseError
from fragsim.parsers import PageKind, classify, kind_counts, read_kpagecount, read_kpageflags
from fragsim.parsers import kpageflags as kpf

REAL = Path(__file__).resolve().parent.parent / "fixtures" / "real"
S04 = REAL / "oracle-6.1/s04_balloon_inflated/kpageflags.gz"
S07 = REAL / "oracle-6.1/s07_thp_faulted/kpageflags.gz"
FC = REAL / "firecracker-6.18"


def counts_by_name(kinds: np.ndarray) -> dict[str, int]:
    return {k.name: v for k, v in kind_counts(kinds).items()}


def test_read_sizes_and_bits() -> None:
    f = read_kpageflags(S04)
    assert f.dtype == np.uint64 and f.shape == (262144,)  # 1 GiB guest, pfn 0..262143
    # The summary of the oracle run: buddy / slab / offline(balloon) bit counts at s04.
    assert int(((f >> np.uint64(kpf.KPF_BUDDY)) & np.uint64(1)).sum()) == 18447
    assert int(((f >> np.uint64(kpf.KPF_SLAB)) & np.uint64(1)).sum()) == 11102
    assert int(((f >> np.uint64(kpf.KPF_OFFLINE)) & np.uint64(1)).sum()) == 131072
    assert int(((f >> np.uint64(kpf.KPF_LRU)) & np.uint64(1)).sum()) == 30413


def test_classify_balloon_stage() -> None:
    kinds = classify(read_kpageflags(S04))
    assert kinds.dtype == np.uint8 and kinds.shape == (262144,)
    c = counts_by_name(kinds)
    assert sum(c.values()) == 262144
    assert c == {
        "NOPAGE": 0,
        "BUDDY": 18447,
        "RESERVED": 16270,
        "SLAB": 11102,
        "PGTABLE": 294,
        "OFFLINE": 131072,
        "ZSMALLOC": 31661,
        "LRU_ANON": 30425,
        "LRU_FILE": 14844,
        "UNEVICTABLE": 0,
        "COMPOUND": 0,
        "OTHER_KERNEL": 8029,
    }


def test_classify_thp_stage() -> None:
    c = counts_by_name(classify(read_kpageflags(S07)))
    assert sum(c.values()) == 262144
    assert c["COMPOUND"] == 125440 == 245 * 512  # whole THPs (head and tails)
    assert c["BUDDY"] == 23233 and c["OFFLINE"] == 0 and c["SLAB"] == 11118


def test_classify_618_with_kpagecount() -> None:
    flags = read_kpageflags(FC / "kpageflags.gz")
    counts = read_kpagecount(FC / "kpagecount.gz")
    assert flags.shape == counts.shape == (6553600,)
    with_counts = counts_by_name(classify(flags, counts))
    without = counts_by_name(classify(flags))
    assert sum(with_counts.values()) == sum(without.values()) == 6553600
    assert with_counts["BUDDY"] == 1471291 and with_counts["UNEVICTABLE"] == 3230
    # 61 mapped pages lack the MMAP bit but have a map count: user pages off the LRU.
    assert with_counts["LRU_FILE"] - without["LRU_FILE"] == 61
    assert without["OTHER_KERNEL"] - with_counts["OTHER_KERNEL"] == 61


def bit(*names: str) -> int:
    return sum(1 << getattr(kpf, f"KPF_{n}") for n in names)


@pytest.mark.parametrize(
    ("flags", "kind"),
    [
        (bit("NOPAGE"), PageKind.NOPAGE),
        (bit("NOPAGE", "BUDDY"), PageKind.NOPAGE),
        (bit("BUDDY"), PageKind.BUDDY),
        (bit("BUDDY", "PRIVATE"), PageKind.BUDDY),
        (bit("OFFLINE"), PageKind.OFFLINE),
        (bit("RESERVED", "MMAP"), PageKind.RESERVED),
        (bit("RESERVED", "SLAB"), PageKind.RESERVED),
        (bit("SLAB", "COMPOUND_TAIL"), PageKind.SLAB),
        (bit("PGTABLE"), PageKind.PGTABLE),
        (bit("COMPOUND_HEAD", "THP", "LRU", "ANON", "MMAP"), PageKind.COMPOUND),
        (bit("COMPOUND_TAIL", "THP", "ANON", "MMAP"), PageKind.COMPOUND),
        (bit("COMPOUND_HEAD", "HUGE"), PageKind.COMPOUND),
        (bit("COMPOUND_HEAD"), PageKind.OTHER_KERNEL),  # large kmalloc and the like
        (bit("UNEVICTABLE", "LRU", "MLOCKED", "ANON"), PageKind.UNEVICTABLE),
        (bit("LRU", "ANON", "SWAPBACKED"), PageKind.LRU_ANON),
        (bit("LRU", "SWAPBACKED"), PageKind.LRU_ANON),  # shmem/tmpfs
        (bit("ANON", "MMAP"), PageKind.LRU_ANON),  # off-LRU (per-cpu add batch)
        (bit("LRU", "UPTODATE"), PageKind.LRU_FILE),
        (bit("LRU", "PRIVATE"), PageKind.LRU_FILE),  # page cache with buffer heads
        (bit("PRIVATE"), PageKind.ZSMALLOC),
        (bit("MMAP"), PageKind.LRU_FILE),
        (0, PageKind.OTHER_KERNEL),
    ],
)
def test_precedence(flags: int, kind: PageKind) -> None:
    out = classify(np.array([flags], dtype=np.uint64))
    assert PageKind(int(out[0])) is kind


def test_counts_promote_mapped_pages() -> None:
    flags = np.zeros(3, np.uint64)
    counts = np.array([0, 2, 0], np.uint64)
    assert classify(flags, counts).tolist() == [
        PageKind.OTHER_KERNEL,
        PageKind.LRU_FILE,
        PageKind.OTHER_KERNEL,
    ]
    with pytest.raises(ValueError, match="shape"):
        classify(flags, counts[:2])
    with pytest.raises(ValueError, match="uint64"):
        classify(flags.astype(np.int64))  # type: ignore[arg-type, unused-ignore]


def test_sources_raw_gzip_bytes(tmp_path: Path) -> None:
    raw = gzip.decompress(S07.read_bytes())[: 8 * 4096]
    (tmp_path / "kpf").write_bytes(raw)
    a = read_kpageflags(tmp_path / "kpf")
    b = read_kpageflags(raw)
    c = read_kpageflags(gzip.compress(raw))
    assert a.shape == (4096,) and np.array_equal(a, b) and np.array_equal(a, c)
    assert np.array_equal(a, read_kpageflags(S07)[:4096])


def test_size_not_multiple_of_8(tmp_path: Path) -> None:
    (tmp_path / "kpagecount").write_bytes(b"\0" * 8 * 5 + b"\1\2\3")
    with pytest.raises(ParseError) as ei:
        read_kpagecount(tmp_path / "kpagecount")
    assert "43 bytes is not a multiple of 8" in str(ei.value)
    assert ei.value.path.endswith("kpagecount") and ei.value.lineno is None
    with pytest.raises(ParseError, match="corrupt gzip"):
        read_kpageflags(b"\x1f\x8b\x08garbage")


def test_bit_numbers() -> None:
    assert (
        kpf.KPF_LOCKED,
        kpf.KPF_BUDDY,
        kpf.KPF_NOPAGE,
        kpf.KPF_THP,
        kpf.KPF_OFFLINE,
        kpf.KPF_PGTABLE,
    ) == (0, 10, 20, 22, 23, 26)
    assert (kpf.KPF_RESERVED, kpf.KPF_PRIVATE, kpf.KPF_SOFTDIRTY, kpf.KPF_ARCH_2) == (
        32,
        35,
        40,
        41,
    )
    assert PageKind["THP"] is PageKind.COMPOUND
    assert len(PageKind) == 12
