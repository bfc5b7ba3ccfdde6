"""Target specs, and splitting and joining sequences across kernels (no sockets)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipython_parallel_kernel.client.cluster import join, parse_targets, split


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, [0, 1, 2, 3, 4]),
        ("all", [0, 1, 2, 3, 4]),
        (3, [3]),
        (-2, [3]),
        ([4, 0], [4, 0]),
        (slice(None, None, -2), [4, 2, 0]),
        ("0, 2", [0, 2]),
        ("1:3", [1, 2]),
        ("::2", [0, 2, 4]),
        ("-1", [4]),
        (":2,4", [0, 1, 4]),
        ("3:", [3, 4]),
    ],
)
def test_parse_targets(spec, expected):
    """Every target form gives the kernel indices it names, in order."""
    assert parse_targets(spec, 5) == expected


@pytest.mark.parametrize(
    "spec", ["a", "1;2", "__import__('os')", "1:2:3:4", "", " , ", "0x1", "1.5"]
)
def test_bad_text_targets_are_refused(spec):
    """Text that is not indices and slices is refused, never evaluated."""
    with pytest.raises(ValueError, match=r"e\.g\. '0,2'"):
        parse_targets(spec, 4)


def test_out_of_range_and_wrong_types():
    """Out-of-range targets name the cluster's size; non-ints are refused."""
    with pytest.raises(IndexError, match="has 4 kernels"):
        parse_targets([0, 9], 4)
    with pytest.raises(TypeError):
        parse_targets([0.5], 4)
    with pytest.raises(TypeError):
        parse_targets(True, 4)


@given(st.lists(st.integers()), st.integers(min_value=1, max_value=9))
def test_split_then_join_is_identity(items, parts):
    """split gives contiguous blocks differing by at most one in length; join undoes it."""
    blocks = split(items, parts)
    assert len(blocks) == parts
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1
    assert join(blocks) == items


def test_join_keeps_tuples_and_arrays():
    """Tuples stay tuples and arrays are concatenated with numpy."""
    assert join(split(tuple(range(5)), 2)) == (0, 1, 2, 3, 4)
    array = np.arange(12).reshape(6, 2)
    assert np.array_equal(join(split(array, 4)), array)
    assert join(split(range(5), 3)) == [0, 1, 2, 3, 4]
