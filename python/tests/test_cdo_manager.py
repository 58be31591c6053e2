"""Core Data Objects through a pool manager: one started in this process,
and a `cdo-pm` process with a producer in another Python process."""

import threading

import numpy as np
import pytest

import mambatiers as mt
from conftest import run_python

PRODUCER = """
import numpy as np, mambatiers as mt
pool = mt.Pool()                       # joins through CDO_POOL_SOCKET
assert pool.kind == "pool-manager"
demands = pool.subscribe("name == 'sim/step7/rho'", events=["demand"])
p = pool.declare("sim/step7/rho")
p.set("sim.step", 7)
p.set("sim.shape", [4, 5])
p.write(np.arange(20, dtype=np.float64).reshape(4, 5))
p.seal()
p.offer()
assert demands.wait(timeout=60).kind == "demand"
p.withdraw(timeout=60)
p.dispose()
print("withdrawn")
"""


def test_producer_process_through_cdo_pm(cdo_pm, monkeypatch):
    producer = run_python(PRODUCER, cdo_pm)
    for key, value in cdo_pm.items():
        monkeypatch.setenv(key, value)
    pool = mt.Pool()
    assert pool.kind == "pool-manager"
    c = pool.declare("sim/step7/rho")
    c.require()
    rho = c.demand(timeout=60, dtype=np.float64)
    shape = tuple(c.attributes["sim.shape"])
    assert c.attributes["sim.step"] == 7
    np.testing.assert_array_equal(rho.reshape(shape), np.arange(20.0).reshape(4, 5))
    assert not rho.flags.writeable
    with pytest.raises(ValueError):
        rho[0] = 1.0
    del rho
    c.dispose()
    out, err = producer.communicate(timeout=60)
    assert producer.returncode == 0, err
    assert out.strip() == "withdrawn"


def test_manager_in_process_events_and_views():
    manager = mt.Pool.start_manager()
    env = manager.environment
    consumer = mt.Pool.connect(env["CDO_POOL_SOCKET"], env["CDO_WORKFLOW_TOKEN"])
    sub = consumer.subscribe("app.step >= 2", events=["offer"])
    # Held: a handle that goes withdraws its offer, in process and here.
    producers = []
    for step in (1, 2, 3):
        p = manager.declare(f"m/{step}")
        p.set("app.step", step)
        p.write(np.full(4, step, dtype=np.int64))
        p.seal()
        p.offer()
        producers.append(p)
    seen = [sub.wait(timeout=10) for _ in range(2)]
    assert [(e.name, e.attributes["app.step"]) for e in seen] == [("m/2", 2), ("m/3", 3)]
    assert sub.poll() is None
    assert consumer.offers("app.step >= 2") == ["m/2", "m/3"]
    c = consumer.declare("m/3")
    c.require()
    data = c.demand(timeout=10, dtype=np.int64)
    assert list(data) == [3, 3, 3, 3] and not data.flags.writeable
    del data  # the view goes; the producer's withdrawal completes
    c.dispose()
    p.withdraw(timeout=10)
    assert p.state == "withdrawn"


def test_demand_through_a_manager_waits_without_the_gil():
    manager = mt.Pool.start_manager()
    env = manager.environment
    # A pool joined to a manager is one client: the waiting consumer gets
    # its own.
    pool = mt.Pool.connect(env["CDO_POOL_SOCKET"], env["CDO_WORKFLOW_TOKEN"])
    c = pool.declare("gil/x")
    c.require()
    got = {}

    def consume():
        got["data"] = bytes(c.demand(timeout=30))
        c.dispose()

    t = threading.Thread(target=consume)
    t.start()
    p = manager.declare("gil/x")
    p.write(b"through the manager")
    p.seal()
    p.offer()
    t.join(timeout=30)
    assert not t.is_alive()
    assert got["data"] == b"through the manager"
    p.withdraw(timeout=30)


def test_acknowledged_event_through_a_manager():
    manager = mt.Pool.start_manager()
    env = manager.environment
    watcher = mt.Pool.connect(env["CDO_POOL_SOCKET"], env["CDO_WORKFLOW_TOKEN"])
    sub = watcher.subscribe("name == 'ackd/x'", events=["offer"], ack=True)
    done = {}

    def produce():
        p = manager.declare("ackd/x")
        p.write(b"x")
        p.seal()
        p.offer()  # answered once the watcher acknowledges
        done["offered"] = True

    t = threading.Thread(target=produce)
    t.start()
    event = sub.wait(timeout=30)
    assert (event.name, event.needs_ack) == ("ackd/x", True)
    event.ack()
    t.join(timeout=30)
    assert done == {"offered": True}


def test_manager_misuse_raises_typed_exceptions(cdo_pm, monkeypatch):
    with pytest.raises(mt.PoolManagerError):
        mt.Pool.connect(cdo_pm["CDO_POOL_SOCKET"], "not-the-token")
    for key in ("CDO_POOL_SOCKET", "CDO_WORKFLOW_TOKEN", "CDO_WORKFLOW_TOKEN_FILE"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(mt.PoolManagerError, match="CDO_POOL_SOCKET"):
        mt.Pool.connect()
    pool = mt.Pool.connect(cdo_pm["CDO_POOL_SOCKET"], cdo_pm["CDO_WORKFLOW_TOKEN"])
    c = pool.declare("bad/order")
    with pytest.raises(mt.InvalidStateError, match="Withdraw"):
        c.withdraw(timeout=1)
    with pytest.raises(mt.InvalidNameError):
        pool.declare("a//b")
    with pytest.raises(mt.SelectorError):
        pool.subscribe("(((")
    r = pool.declare("bad/never")
    r.require()
    with pytest.raises(mt.CdoTimeoutError):
        r.demand(timeout=0.2)
