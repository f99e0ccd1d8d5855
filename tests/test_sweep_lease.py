"""Per-run leases: exclusive claims, heartbeats, expiry and takeover."""

import json
import os
import time

import pytest

from multiscale.sweep.lease import claim_state, create_exclusive, new_owner, read_claim, try_claim


def test_a_claim_is_exclusive_until_released(tmp_path):
    path = tmp_path / "claims" / "r1.json"
    a, b = new_owner(), new_owner()
    lease = try_claim(path, a, lease_s=30)
    assert lease is not None and not lease.taken_over
    assert read_claim(path)["token"] == a["token"]
    assert try_claim(path, b, lease_s=30) is None and claim_state(path) == "live"
    lease.release()
    assert not path.exists() and claim_state(path) == "free"
    with try_claim(path, b, lease_s=30) as again:
        assert again is not None and read_claim(path)["token"] == b["token"]
    assert not path.exists()


def test_create_exclusive_refuses_an_existing_file(tmp_path):
    path = tmp_path / "x.json"
    assert create_exclusive(path, "one")
    assert not create_exclusive(path, "two")
    assert path.read_text() == "one"


def test_heartbeat_keeps_a_short_lease_alive(tmp_path):
    path = tmp_path / "r1.json"
    lease = try_claim(path, new_owner(), lease_s=0.3)
    first = read_claim(path)["heartbeat"]
    time.sleep(0.8)  # longer than the lease: only the heartbeat keeps it
    assert read_claim(path)["heartbeat"] > first
    assert try_claim(path, new_owner(), lease_s=0.3) is None
    lease.release()


def test_an_expired_claim_is_taken_over(tmp_path):
    path = tmp_path / "r1.json"
    dead = new_owner()
    path.write_text(json.dumps({**dead, "heartbeat": time.time() - 100, "lease_s": 10.0}))
    assert claim_state(path) == "expired"
    taker = new_owner()
    lease = try_claim(path, taker, lease_s=10)
    assert lease is not None and lease.taken_over
    assert read_claim(path)["token"] == taker["token"]
    assert not [p for p in tmp_path.iterdir() if ".stale-" in p.name]  # the old claim is gone
    lease.release()


def test_a_claim_being_written_is_judged_by_its_age(tmp_path):
    path = tmp_path / "r1.json"
    path.write_text("")  # created, not yet written
    assert read_claim(path) == {} and claim_state(path, lease_s=30) == "live"
    assert try_claim(path, new_owner(), lease_s=30) is None
    old = time.time() - 100
    os.utime(path, (old, old))
    assert claim_state(path, lease_s=30) == "expired"
    lease = try_claim(path, new_owner(), lease_s=30)
    assert lease is not None and lease.taken_over
    lease.release()


def test_a_lease_taken_over_is_noticed_by_its_old_owner(tmp_path):
    path = tmp_path / "r1.json"
    slow = try_claim(path, new_owner(), lease_s=0.2)
    slow._stop.set()  # the owner stalls: no heartbeat
    slow._thread.join()
    time.sleep(0.3)
    taker = try_claim(path, new_owner(), lease_s=0.2)
    assert taker is not None and taker.taken_over
    slow._stop.clear()
    slow.start()
    time.sleep(0.15)
    assert slow.lost  # its next heartbeat saw another owner and stopped
    slow.release()  # gives back nothing that is not its own
    assert read_claim(path)["token"] == taker.owner["token"]
    taker.release()


def test_a_claim_of_a_dead_process_on_this_host_is_stale_at_once(tmp_path):
    gone = 2**30  # above any pid_max: no such process on this host
    with pytest.raises(ProcessLookupError):
        os.kill(gone, 0)
    path = tmp_path / "r1.json"
    path.write_text(json.dumps({**new_owner(), "pid": gone, "heartbeat": time.time(), "lease_s": 300.0}))
    assert claim_state(path, lease_s=300) == "expired"
    lease = try_claim(path, new_owner(), lease_s=300)
    assert lease is not None and lease.taken_over
    lease.release()
    path.write_text(json.dumps({**new_owner(), "heartbeat": time.time(), "lease_s": 300.0}))  # this process
    assert claim_state(path, lease_s=300) == "live"
