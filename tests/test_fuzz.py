"""Fuzzing the verify entry point, bounded for CI (longer runs: bench/fuzz_verify.py).

Mutations of a genuinely signed JPEG and PNG (byte flips, insertions, truncation) go to
``verify_file`` in this process, so an escaping exception fails the test with the input that
caused it; a native crash would take pytest down with it, which is just as loud.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avow_c2pa.verify import EXIT_CODES, trust_anchors, verify_file
from hostile import signed

edits = st.lists(st.tuples(st.integers(0, 2**31), st.binary(min_size=1, max_size=8)), max_size=6)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, shared_home):
    os.environ["AVOW_CONFIG_DIR"] = str(shared_home)
    folder = tmp_path_factory.mktemp("fuzz")
    return folder, {ext: signed(folder, ext).read_bytes() for ext in ("jpg", "png")}, trust_anchors()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ext=st.sampled_from(["jpg", "png"]), changes=edits, cut=st.one_of(st.none(), st.integers(0, 2**31)),
       insert=st.booleans())
def test_mutated_signed_files_always_get_a_verdict(seeds, ext, changes, cut, insert):
    folder, originals, anchors = seeds
    data = bytearray(originals[ext])
    for offset, chunk in changes:
        position = offset % len(data)
        if insert:
            data[position:position] = chunk
        else:
            data[position : position + len(chunk)] = chunk
    if cut is not None:
        del data[cut % len(data) :]
    path = folder / f"mutant.{ext}"
    path.write_bytes(bytes(data))
    report = verify_file(path, anchors)
    assert report.verdict in EXIT_CODES and report.summary
