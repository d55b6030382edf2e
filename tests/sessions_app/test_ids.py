"""Session and image ids: `sess_<ULID>` / `img_<ULID>` whose 80-bit random part is fresh for every id.

A session id is the only credential of the phone's endpoints: an id made in the same millisecond as a known
one must not be derivable from it.
"""

from itertools import groupby, pairwise

import pytest
from ulid import ULID

from apertur.ids import new_image_id, new_session_id

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def same_millisecond_groups(ids: list[str], prefix: str) -> list[list[int]]:
    """The ids' random parts as integers, grouped by the millisecond they were made in (in order made)."""
    ulids = [ULID.from_str(value.removeprefix(prefix)) for value in ids]
    return [
        [int.from_bytes(ulid.bytes[6:], "big") for ulid in group]
        for _, group in groupby(ulids, key=lambda ulid: ulid.milliseconds)
    ]


@pytest.mark.parametrize(("make", "prefix"), [(new_session_id, "sess_"), (new_image_id, "img_")])
def test_ids_made_in_the_same_millisecond_share_nothing_but_the_time(make, prefix):
    ids = [make() for _ in range(2000)]

    groups = [group for group in same_millisecond_groups(ids, prefix) if len(group) > 1]
    assert groups, "expected several ids per millisecond"
    for group in groups:
        for earlier, later in pairwise(group):
            assert abs(later - earlier) != 1, "consecutive random parts"
            # Two fresh 80-bit numbers agree on their top 60 bits with probability 2**-60.
            assert earlier >> 20 != later >> 20, "random parts differ only in their last characters"


@pytest.mark.parametrize(("make", "prefix"), [(new_session_id, "sess_"), (new_image_id, "img_")])
def test_ids_keep_the_ulid_format_and_sort_by_time(make, prefix):
    ids = [make() for _ in range(500)]

    assert all(value.startswith(prefix) and len(value) == len(prefix) + 26 for value in ids)
    assert all(set(value.removeprefix(prefix)) <= CROCKFORD for value in ids)
    assert len(set(ids)) == len(ids)
    time_prefixes = [value.removeprefix(prefix)[:10] for value in ids]
    assert time_prefixes == sorted(time_prefixes)
