"""Byte-level damage for the hypothesis fuzz tests (shards, manifests, npz imports, saved weights): a cut, bit flips
or a deleted range, drawn as a hypothesis strategy and applied to a byte string."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st


def mutations(size: int, hot: Sequence[int] = (), max_flips: int = 4, max_delete: int = 700) -> st.SearchStrategy:
    """Damage to a byte string of ``size`` bytes: a truncation, 1-``max_flips`` bit flips or a deleted range of up to
    ``max_delete`` bytes; with ``hot`` offsets (headers, records), half of the offsets fall within 160 bytes after
    one of them."""
    offset = st.integers(0, size - 1)
    if hot:
        near_hot = st.tuples(st.sampled_from(list(hot)), st.integers(0, 160)).map(lambda t: min(t[0] + t[1], size - 1))
        offset = st.one_of(offset, near_hot)
    return st.one_of(
        st.tuples(st.just("truncate"), offset),
        st.tuples(st.just("flip"), st.lists(st.tuples(offset, st.integers(0, 7)), min_size=1, max_size=max_flips)),
        st.tuples(st.just("delete"), st.tuples(offset, st.integers(1, max_delete))),
    )


def apply_mutation(data: bytes, mutation: tuple) -> bytes:
    """``data`` with one drawn :func:`mutations` applied."""
    kind, arg = mutation
    if kind == "truncate":
        return data[:arg]
    if kind == "delete":
        start, n = arg
        return data[:start] + data[start + n:]
    out = bytearray(data)
    for pos, bit in arg:
        out[pos] ^= 1 << bit
    return bytes(out)
