"""Tiers, placements and zero-copy allocations of mamba."""

import gc

import numpy as np
import pytest

import mambatiers as mt
from conftest import XEON_MAX

KINDS = {"dram", "hbm", "nvdimm", "gpu", "pinned", "ssd"}


def test_tiers_list_this_node(mamba):
    tiers = mamba.tiers()
    assert tiers, "a node has at least one memory space"
    for t in tiers:
        assert t.kind in KINDS
        assert t.capacity > 0
        assert t.name.startswith(t.kind)
    dram = [t for t in tiers if t.kind == "dram"]
    assert dram and all(t.numa is not None and t.host_accessible for t in dram)


def test_simulated_node_has_hbm_on_its_own_numa_nodes():
    node = mt.Mamba(topology=str(XEON_MAX), gpu=False)
    hbm = [t for t in node.tiers() if t.kind == "hbm"]
    dram = [t for t in node.tiers() if t.kind == "dram"]
    assert len(hbm) == 2 and len(dram) == 2
    assert {t.numa for t in hbm}.isdisjoint({t.numa for t in dram})
    placement = node.placement(tier="hbm")
    assert [t.kind for t in placement.tiers()] == ["hbm", "hbm"]
    a = placement.allocate(1 << 16)
    assert a.tier.kind == "hbm" and a.nbytes == 1 << 16
    near = node.placement(tier="hbm", near_node=hbm[1].numa).tiers()
    assert near[0].name == hbm[1].name


def test_preference_chain_and_policies(mamba):
    chain = mamba.placement(tier=["hbm", "dram"]).tiers()
    assert chain and all(t.kind in {"hbm", "dram"} for t in chain)
    for policy in ("bandwidth", "latency", "capacity"):
        assert mamba.allocate(4096, policy=policy).nbytes == 4096


def test_arrays_of_one_allocation_share_their_bytes(mamba):
    a = mamba.allocate(8 * 64, tier="dram")
    flat = a.array(dtype=np.float64)
    grid = a.array(dtype="f8", shape=(8, 8))
    assert flat.flags.writeable and grid.shape == (8, 8)
    flat[:] = np.arange(64)
    assert grid[3, 5] == 29.0
    grid[7, 7] = -1.0
    assert flat[63] == -1.0
    assert flat.__array_interface__["data"][0] == a.address
    assert bytes(a.array()[:8]) == np.float64(0.0).tobytes()


def test_array_keeps_its_allocation_alive(mamba):
    a = mamba.allocate(4096)
    view = a.array(dtype=np.uint32)
    view[:] = 7
    del a
    gc.collect()
    # Allocate over the freed space if it had been freed: the view must
    # still hold its own bytes.
    others = [mamba.allocate(4096).array(dtype=np.uint32) for _ in range(8)]
    for o in others:
        o[:] = 9
    assert (view == 7).all()


def test_bad_placements_raise(mamba):
    with pytest.raises(mt.TierError, match="nosuchspace"):
        mamba.placement(tier="nosuchspace")
    with pytest.raises(ValueError, match="unknown policy"):
        mamba.placement(policy="fastest")
    with pytest.raises(ValueError):
        mamba.placement(tier="dram", policy="bandwidth")
    with pytest.raises(mt.TierError):
        mamba.allocate(0)
    with pytest.raises(ValueError):
        mamba.allocate(4096).array(dtype=np.float64, shape=(3, 3))
    if not any(t.kind == "hbm" for t in mamba.tiers()):
        with pytest.raises(mt.TierError):
            mamba.placement(tier="hbm")
    assert issubclass(mt.TierError, mt.MambaError)
