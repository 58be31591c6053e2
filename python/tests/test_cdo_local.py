"""Core Data Objects in a pool of this process."""

import threading

import numpy as np
import pytest

import mambatiers as mt


@pytest.fixture
def pool(mamba):
    return mt.Pool.in_process(mamba=mamba)


def offer(pool, name, data, **attrs):
    p = pool.declare(name)
    for key, value in attrs.items():
        p.set(key, value)
    p.write(data)
    p.seal()
    p.offer()
    return p


def test_producer_consumer_zero_copy(pool):
    field = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    p = offer(pool, "run/step1/rho", field, priority="output")
    assert p.state == "offered"
    first, second = pool.declare("run/step1/rho"), pool.declare("run/step1/rho")
    first.require()
    second.require()
    a = first.demand(timeout=10, dtype=np.float64, shape=(3, 4))
    b = second.demand(timeout=10, dtype=np.float64)
    np.testing.assert_array_equal(a, field)
    # Both consumers view the pool's one copy of the bytes.
    assert a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    assert first.attributes["priority"] == "output"
    assert first.attributes["size"] == field.nbytes
    first.dispose()
    second.dispose()
    p.withdraw(timeout=10)
    p.dispose()
    # The arrays outlive the handles and the withdrawal.
    assert a[2, 3] == 1.0


def test_consumer_arrays_are_read_only(pool):
    p = offer(pool, "ro/x", np.arange(8, dtype=np.int32))
    c = pool.declare("ro/x")
    c.require()
    data = c.demand(timeout=10, dtype=np.int32)
    assert not data.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        data[0] = 5
    with pytest.raises(ValueError):
        data.setflags(write=True)
    assert list(data) == list(range(8))
    c.dispose()
    p.withdraw(timeout=10)


def test_demand_waits_for_an_offer_from_another_thread(pool):
    consumer = pool.declare("late/x")
    consumer.require()
    got = {}

    def consume():
        got["data"] = bytes(consumer.demand(timeout=30))

    t = threading.Thread(target=consume)
    t.start()
    # The consumer waits without the GIL: this thread can produce.
    p = offer(pool, "late/x", b"payload")
    t.join(timeout=30)
    assert not t.is_alive()
    assert got["data"] == b"payload"
    consumer.dispose()
    p.withdraw(timeout=10)


def test_withdraw_waits_for_a_required_consumer(pool):
    p = offer(pool, "wait/x", b"abc")
    c = pool.declare("wait/x")
    c.require()
    with pytest.raises(mt.CdoTimeoutError):
        p.withdraw(timeout=0.2)
    assert p.state == "offered"
    assert bytes(c.demand(timeout=10)) == b"abc"
    c.dispose()
    p.withdraw(timeout=10)
    assert p.state == "withdrawn"


def test_subscription_with_selector(pool):
    sub = pool.subscribe("priority == 'checkpoint'", events=["offer", "withdraw"])
    out = offer(pool, "sel/out", b"1", priority="output")
    ckpt = offer(pool, "sel/ckpt", b"2", priority="checkpoint")
    event = sub.wait(timeout=10)
    assert (event.kind, event.name) == ("offer", "sel/ckpt")
    assert event.attributes["priority"] == "checkpoint"
    out.withdraw(timeout=10)
    ckpt.withdraw(timeout=10)
    assert (sub.wait(timeout=10).kind, sub.poll()) == ("withdraw", None)
    assert pool.offers() == []


def test_misuse_raises_typed_exceptions(pool):
    c = pool.declare("misuse/x")
    with pytest.raises(mt.InvalidStateError, match="Offer"):
        c.offer()
    with pytest.raises(mt.InvalidStateError):
        c.demand(timeout=1)
    with pytest.raises(mt.InvalidNameError):
        pool.declare("")
    with pytest.raises(mt.CdoAttributeError, match="read-only"):
        c.set("version", 1)
    with pytest.raises(mt.CdoAttributeError):
        c.set("priority", 3)
    with pytest.raises(TypeError):
        c.set("priority", object())
    with pytest.raises(mt.SelectorError, match="byte"):
        pool.subscribe("size >")
    with pytest.raises(ValueError, match="unknown event"):
        pool.subscribe("", events=["nonsense"])
    r = pool.declare("misuse/never")
    r.require()
    with pytest.raises(mt.CdoTimeoutError):
        r.demand(timeout=0.1)
    assert r.state == "required"
    for cls in (mt.InvalidStateError, mt.InvalidNameError, mt.CdoAttributeError,
                mt.SelectorError, mt.CdoTimeoutError, mt.PoolManagerError):
        assert issubclass(cls, mt.CdoError) and issubclass(cls, mt.MambaError)


def test_acknowledged_subscription_holds_the_offer(mamba, tmp_path):
    config = tmp_path / "pool.yaml"
    config.write_text("ack_timeout_ms: 200\npolicy: fail-fast\n")
    pool = mt.Pool.in_process(mamba=mamba, config=str(config))
    sub = pool.subscribe("name ~ '^ack/'", events=["offer"], ack=True)
    # Nobody acknowledges: the offer takes effect, then reports the timeout.
    with pytest.raises(mt.CdoTimeoutError, match="not acknowledged"):
        offer(pool, "ack/unanswered", b"1")
    assert sub.wait(timeout=10).name == "ack/unanswered"


def test_acknowledged_event_lets_the_offer_finish(pool):
    # The default acknowledgement timeout (10 s) leaves ample time.
    sub = pool.subscribe("name ~ '^ack/'", events=["offer"], ack=True)
    done = {}

    def produce():
        offer(pool, "ack/answered", b"2")
        done["offered"] = True

    t = threading.Thread(target=produce)
    t.start()
    event = sub.wait(timeout=10)
    assert (event.name, event.needs_ack) == ("ack/answered", True)
    event.ack()
    assert not event.needs_ack
    t.join(timeout=30)
    assert done == {"offered": True}


def test_ctrl_c_interrupts_a_demand_without_timeout(pool):
    import _thread

    c = pool.declare("never/offered")
    c.require()
    threading.Timer(0.2, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        c.demand()
    assert c.state == "required"
