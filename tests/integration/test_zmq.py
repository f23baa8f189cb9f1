"""ZeroMQ decision feed on loopback: ordering, slow/absent subscribers, CURVE, heartbeat loss, listen.

Slow joiner handled deterministically: a subscriber waits for its first heartbeat (the
subscription is live) before decisions are published. Every loop is bounded by a timeout.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from ewaste_stream.cli import main
from ewaste_stream.publish import CurveServer, DecisionPublisher, PublisherOptions
from ewaste_stream.subscriber import CurveClient, DecisionSubscriber
from ewaste_stream.testing import make_decision


@pytest.fixture(autouse=True)
def _restore_logging():
    """cli.main() points loguru at this test's captured stderr; point it back afterwards."""
    yield
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="INFO")

HB = 0.05  # fast heartbeats keep the tests short


def _publisher(**opts) -> DecisionPublisher:
    pub = DecisionPublisher("tcp://127.0.0.1:0", "line1", "A", PublisherOptions(heartbeat_s=HB, **opts))
    pub.start()
    return pub


def _drain(sub: DecisionSubscriber, until, limit_s: float = 20.0) -> list[int]:
    """Receive until ``until(seqs, received)`` is true (bounded)."""
    seqs: list[int] = []
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        r = sub.recv(0.2)
        if r is not None and r.decision is not None:
            seqs.append(r.decision.seq)
        if until(seqs, r):
            break
    return seqs


def test_connected_subscriber_gets_every_decision_in_order():
    pub = _publisher()
    sub = DecisionSubscriber(pub.bound_endpoint, "line1")
    try:
        assert sub.wait_for_heartbeat(10.0) is not None
        for i in range(1, 2001):
            pub(make_decision(i, boot_id="A"))
        seqs = _drain(sub, lambda s, r: len(s) >= 2000)
    finally:
        left = pub.close()
        sub.close()
    assert seqs == list(range(1, 2001))
    assert sub.tracker.stats.gaps == 0 and left == 0 and pub.stats.published == 2000


def test_slow_subscriber_never_stalls_publisher_and_sees_the_gap():
    n = 5000
    pub = _publisher(hwm=20)
    sub = DecisionSubscriber(pub.bound_endpoint, "line1", rcvhwm=20)
    try:
        assert sub.wait_for_heartbeat(10.0) is not None
        for i in range(1, n + 1):  # the subscriber reads nothing meanwhile
            pub(make_decision(i, boot_id="A"))
        # the publisher thread works through its queue although nobody reads
        end = time.monotonic() + 20
        while pub.stats.last_seq < n and time.monotonic() < end:
            time.sleep(0.01)
        assert pub.stats.last_seq == n and pub.queue_depth == 0
        # read until a heartbeat announces seq n: then every loss is known
        seqs = _drain(sub, lambda s, r: r is not None and r.heartbeat is not None and r.heartbeat.last_seq == n)
    finally:
        pub.close()
        sub.close()
    st = sub.tracker.stats
    assert 0 < len(seqs) < n and seqs == sorted(seqs)
    assert st.gaps >= 1 and st.missing == n - len(seqs)  # every lost decision is accounted for


def test_absent_subscriber_does_not_block_anything():
    pub = _publisher(hwm=10)
    for i in range(1, 3001):
        pub(make_decision(i, boot_id="A"))
    assert pub.close(timeout=10.0) == 0
    assert pub.stats.last_seq == 3000 and pub.stats.send_errors == 0


def _notices_until(sub: DecisionSubscriber, kind: str, limit_s: float = 10.0) -> list:
    notices: list = []
    end = time.monotonic() + limit_s
    while not any(n.kind == kind for n in notices) and time.monotonic() < end:
        r = sub.recv(0.05)
        notices += list(r.notices) if r else []
        notices += sub.check()
    return notices


def test_clean_stop_is_reported_as_stopped_not_lost():
    pub = _publisher()
    sub = DecisionSubscriber(pub.bound_endpoint, "line1")
    try:
        assert sub.wait_for_heartbeat(10.0) is not None
        pub.close()  # sends a final "stopping" heartbeat
        kinds = [n.kind for n in _notices_until(sub, "daemon_stopped")]
    finally:
        sub.close()
    assert "daemon_stopped" in kinds and "heartbeat_lost" not in kinds


def test_heartbeat_loss_is_reported_when_the_daemon_dies():
    import zmq

    from ewaste_stream.protocol import Heartbeat, encode_heartbeat, heartbeat_topic

    ctx = zmq.Context()
    raw = ctx.socket(zmq.PUB)  # a "daemon" that dies without a stopping heartbeat
    port = raw.bind_to_random_port("tcp://127.0.0.1")
    sub = DecisionSubscriber(f"tcp://127.0.0.1:{port}", "line1", heartbeat_timeout_s=0.3)
    try:
        got = None
        for i in range(200):  # heartbeat until the subscription is live (bounded)
            raw.send_multipart([heartbeat_topic("line1"), encode_heartbeat(Heartbeat("line1", "A", 0, i * HB, "ok"))])
            got = sub.recv(HB)
            if got is not None:
                break
        assert got is not None and got.heartbeat is not None
        raw.close(linger=0)  # silence
        kinds = [n.kind for n in _notices_until(sub, "heartbeat_lost")]
    finally:
        sub.close()
        ctx.term()
    assert "heartbeat_lost" in kinds and sub.tracker.stats.heartbeat_losses == 1


@pytest.fixture
def keys(tmp_path):
    for name in ("server", "bridge", "stranger"):
        assert main(["keys", "--out", str(tmp_path / "keys"), "--name", name]) == 0
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "bridge.key").write_bytes((tmp_path / "keys" / "bridge.key").read_bytes())
    return tmp_path / "keys", allowed


def test_curve_allow_listed_client_receives_unknown_key_does_not(keys):
    kdir, allowed = keys
    pub = _publisher(curve=CurveServer(kdir / "server.key_secret", allowed))
    ep = pub.bound_endpoint
    good = DecisionSubscriber(ep, "line1", CurveClient(kdir / "server.key", kdir / "bridge.key_secret"))
    bad = DecisionSubscriber(ep, "line1", CurveClient(kdir / "server.key", kdir / "stranger.key_secret"))
    plain = DecisionSubscriber(ep, "line1")
    try:
        assert good.wait_for_heartbeat(10.0) is not None
        for i in range(1, 11):
            pub(make_decision(i, boot_id="A"))
        assert _drain(good, lambda s, r: len(s) >= 10) == list(range(1, 11))
        # by now the others had the same heartbeats and decisions on offer: nothing arrived
        assert bad.recv(0.3) is None and plain.recv(0.3) is None
    finally:
        pub.close()
        for s in (good, bad, plain):
            s.close()


def test_keys_refuses_to_overwrite(keys, capsys):
    kdir, _ = keys
    assert main(["keys", "--out", str(kdir), "--name", "server"]) == 2
    assert "exists" in capsys.readouterr().err


def test_listen_prints_decisions_as_json(capsys, tmp_path):
    pub = _publisher()
    stop = threading.Event()

    def feed() -> None:  # keeps publishing until listen has what it wants
        i = 0
        while not stop.is_set() and i < 5000:
            i += 1
            pub(make_decision(i, boot_id="A"))
            time.sleep(0.005)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        rc = main(["listen", pub.bound_endpoint, "--line", "line1", "--json", "--count", "5", "--duration", "20",
                   "--summary", str(tmp_path / "s.json")])
    finally:
        stop.set()
        t.join(5)
        pub.close()
    out = capsys.readouterr()
    seqs = [json.loads(x)["seq"] for x in out.out.splitlines()]
    assert rc == 0 and len(seqs) == 5 and seqs == list(range(seqs[0], seqs[0] + 5))
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["decisions"] == 5 and summary["gaps"] == 0


def test_endpoint_in_use_is_a_clear_error():
    from ewaste_stream.publish import PublishError

    first = _publisher()
    second = DecisionPublisher(first.bound_endpoint, "line1", "B", PublisherOptions(heartbeat_s=HB))
    try:
        with pytest.raises(PublishError, match=f"cannot publish on {first.bound_endpoint}: .*in use"):
            second.start()
    finally:
        first.close()
