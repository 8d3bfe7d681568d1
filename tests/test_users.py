"""The user table: dense numbering by first appearance, looked up as UTF-8 bytes."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from scoresvc.core.users import UserIds, UserTable

names = st.text(min_size=1, max_size=10)


@given(batches=st.lists(st.lists(names, max_size=20), max_size=8))
def test_ids_are_numbered_by_first_appearance_like_a_dict(batches):
    table, reference = UserTable(), {}
    for batch in batches:
        dense = table.register(UserIds.of(batch))
        expected = [reference.setdefault(name, len(reference)) for name in batch]
        assert dense.tolist() == expected
    assert list(table.ids) == list(reference) and table.index == reference


@given(batches=st.lists(st.lists(names, max_size=20), max_size=6), probe=st.lists(names))
def test_a_table_rebuilt_from_its_arrays_finds_the_same_ids(batches, probe):
    table = UserTable()
    for batch in batches:
        table.register(UserIds.of(batch))
    again = UserTable.from_arrays(table.arrays())
    assert list(again.ids) == list(table.ids)
    ids = UserIds.of(probe + list(table.ids))
    np.testing.assert_array_equal(again.find(ids), table.find(ids))
    assert (table.find(UserIds.of(table.ids)) == np.arange(len(table.ids))).all()


def test_ids_differing_only_in_bytes_beyond_the_hash_are_distinct():
    # Prefixes, suffixes and permutations of one another share nothing by accident.
    table = UserTable()
    ids = ["a", "aa", "aaa", "ab", "ba", "é", "e\u0301", "\x00", "\x00\x00"]
    assert table.register(UserIds.of(ids)).tolist() == list(range(len(ids)))
    assert table.register(UserIds.of(ids[::-1])).tolist() == list(range(len(ids)))[::-1]


def test_invalid_ids_are_found_by_position():
    ids = UserIds.of(["ok", "", "x" * 129, "\ud800", "é" * 64, "é" * 65])
    bad_length, bad_text = ids.invalid()
    assert bad_length.tolist() == [1, 2, 5]
    assert bad_text.tolist() == [3]


@given(batch=st.lists(names | st.text(alphabet="abc0", max_size=4), max_size=30))
def test_ids_encode_to_their_utf8_bytes_one_after_another(batch):
    ids = UserIds.of(batch)
    encoded = [name.encode("utf-8", "surrogatepass") for name in batch]
    assert ids.blob.tobytes() == b"".join(encoded)
    assert ids.lengths().tolist() == [len(e) for e in encoded]
    assert ids.decoded() == batch


def test_the_index_by_string_catches_up_with_ids_added_after_it_was_read():
    table = UserTable()
    table.register(UserIds.of(["a", "b"]))
    index = table.index
    assert index["b"] == 1 and index.get("c") is None and "c" not in index
    table.register(UserIds.of(["c", "a", "d", "c"]))
    assert index.get("c") == 2 and index["d"] == 3 and "a" in index
    assert dict(index) == {"a": 0, "b": 1, "c": 2, "d": 3} and len(index) == 4
