"""A controller that lies: it answers 200 for a batch but silently drops a put. The engine knows the ETag
the batch must produce, so the wrong answer is drift found at once, and repaired for that root alone."""

from engine_support import assert_converged, audit, change, client, last_seq, make_worker, new_store, record, settle


def test_a_lost_write_is_caught_by_the_expected_etag_and_repaired_at_once(tmp_path, fabric):
    engine = new_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    record(engine, [change("calm", "network", "c1", name="calm")])
    worker = make_worker(engine, client(fabric))  # no sweep: only the ETag check can notice
    settle(worker)
    before = last_seq(fabric)
    fabric.admin("PUT", "/v1/admin/faults", {"lose_puts": 1})
    record(engine, [change("p1", "network", "n1", name="a"), change("p1", "subnet", "s1", network_id="n1",
                                                                    cidr="10.0.0.0/24")])
    settle(worker)
    assert fabric.admin("GET", "/v1/admin/faults")["lose_puts"] == 0  # the lie happened
    assert_converged(engine, fabric)
    writes = [e for e in audit(fabric, after=before) if e["status"] == 200]
    assert {e["root"] for e in writes} == {"p1"}  # the untouched root saw no write
    assert len(writes) == 2  # the lying answer, then the repair's put of the lost subnet
    worker.shutdown()
