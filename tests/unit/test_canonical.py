"""Canonical JSON, digests, fingerprints, ETags, buckets: the protocol's arithmetic."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from converge.core import canonical
from converge.core.canonical import ObjectDoc
from converge.core.kinds import Kind


def test_canonical_json_sorts_keys_without_whitespace_and_keeps_unicode():
    assert canonical.canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()


@pytest.mark.parametrize("bad", [1.5, float("nan"), 2**60, {1: "x"}, {"a": {1, 2}}])
def test_values_without_a_canonical_form_are_refused_with_their_path(bad):
    with pytest.raises(canonical.NotCanonical, match=r"\$"):
        canonical.canonical_json({"x": bad})


def test_digest_is_sha256_of_the_canonical_object():
    doc = ObjectDoc(Kind.NETWORK, "n1", {"name": "a"}, 2)
    raw = b'{"attributes":{"name":"a"},"id":"n1","kind":"network","revision":2}'
    assert doc.canonical() == raw
    assert doc.digest() == int.from_bytes(hashlib.sha256(raw).digest(), "big")


docs = st.builds(ObjectDoc, st.sampled_from(list(Kind)), st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
                 st.dictionaries(st.sampled_from(["name", "mtu", "x"]), st.integers(0, 10_000)),
                 st.integers(0, 100))


@given(st.lists(docs, max_size=30), st.randoms())
def test_fingerprint_is_order_independent_and_incremental(items, rnd):
    digests = [d.digest() for d in items]
    shuffled = digests[:]
    rnd.shuffle(shuffled)
    assert canonical.combine(digests) == canonical.combine(shuffled)
    fp = 0
    for d in digests:
        fp = canonical.add(fp, d)
    for d in digests[: len(digests) // 2]:
        fp = canonical.remove(fp, d)
    assert fp == canonical.combine(digests[len(digests) // 2:])


@given(st.integers(0, 2**256 - 1))
def test_etag_round_trips(value):
    assert canonical.parse_etag(canonical.etag(value)) == value


@pytest.mark.parametrize("bad", ['W/"' + "0" * 64 + '"', '"abc"', "z" * 64, ""])
def test_bad_etags_are_refused(bad):
    with pytest.raises(canonical.BadETag):
        canonical.parse_etag(bad)


def test_group_sums_fold_buckets_by_first_hex_digit():
    sums = {0x61: 5, 0x6F: 7, 0x42: 1}
    assert canonical.group_sums(sums) == {"6": 12, "4": 1}
    assert canonical.bucket_of("network", "net-1") == 0x61
