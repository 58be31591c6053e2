#!/usr/bin/env python3
"""Writes the seed inputs of the pool_manager fuzz target to
corpus/pool_manager/: operation sequences in the byte layout that the
`arbitrary` crate (1.x) decodes into the target's `Input`. Check one with
`cargo +nightly fuzz fmt pool_manager corpus/pool_manager/<file>`."""

import os
import struct

OPS = ["Offer", "Demand", "Require", "Retract", "Withdraw", "DropView",
       "Subscribe", "JoinGroup", "Unsubscribe", "Poll", "Stat", "Leave",
       "Drop", "Reconnect", "Raw"]


def variant(name):
    # derive(Arbitrary) picks variant (u32 * count) >> 32.
    i = OPS.index(name)
    return struct.pack("<I", (i << 32) // len(OPS) + 1)


def op(who, name, *fields):
    out = bytes([1, who]) + variant(name)  # 1: one more step follows
    for f in fields:
        out += f
    return out


u8 = lambda v: bytes([v])
u16 = lambda v: struct.pack("<H", v)
flag = lambda v: bytes([1 if v else 0])


def raw(join, data):
    out = flag(join)
    for b in data:
        out += bytes([1, b])
    return out + bytes([0])


def seq(clients, steps, drop_at_end=0):
    return bytes([clients]) + b"".join(steps) + bytes([0, drop_at_end])


here = os.path.dirname(os.path.abspath(__file__))
frames = open(os.path.join(here, "corpus/wire_decode/requests"), "rb").read()
subscribe = open(os.path.join(here, "corpus/wire_decode/subscribe"), "rb").read()

SEEDS = {
    "offer-demand-withdraw": seq(0, [
        op(0, "Offer", u8(1), u16(100), u8(7)),
        op(1, "Demand", u8(1)),
        op(1, "DropView", u8(0)),
        op(0, "Withdraw", u8(1)),
        op(1, "Offer", u8(1), u16(0), u8(3)),
        op(0, "Demand", u8(1)),
    ]),
    "duplicate-and-owner": seq(1, [
        op(0, "Offer", u8(2), u16(4000), u8(200)),
        op(1, "Offer", u8(2), u16(10), u8(1)),
        op(2, "Withdraw", u8(2)),
        op(2, "Withdraw", u8(3)),
        op(1, "Stat"),
    ]),
    "require-leave": seq(1, [
        op(1, "Require", u8(4)),
        op(0, "Offer", u8(4), u16(64), u8(9)),
        op(0, "Leave"),
        op(1, "Demand", u8(4)),
        op(1, "Retract", u8(4)),
        op(0, "Reconnect"),
    ], drop_at_end=2),
    "demand-before-offer": seq(2, [
        op(3, "Demand", u8(5)),
        op(1, "Offer", u8(5), u16(33), u8(4)),
        op(1, "Withdraw", u8(5)),
        op(3, "Drop"),
        op(2, "Offer", u8(5), u16(1), u8(5)),
    ]),
    "events-acked": seq(0, [
        op(1, "Subscribe", u8(0), u16(0x3ff), flag(True)),
        op(0, "Offer", u8(0), u16(128), u8(150)),
        op(1, "Poll", flag(True), flag(True)),
        op(0, "Withdraw", u8(0)),
        op(1, "Unsubscribe", u8(0)),
        op(1, "Subscribe", u8(5), u16(4), flag(False)),
    ]),
    "group-records": seq(1, [
        op(1, "JoinGroup", flag(False), u8(0)),
        op(2, "JoinGroup", flag(False), u8(0)),
        op(2, "JoinGroup", flag(False), u8(1)),
        op(0, "Offer", u8(0), u16(10), u8(1)),
        op(0, "Offer", u8(1), u16(20), u8(2)),
        op(0, "Offer", u8(2), u16(30), u8(3)),
        op(1, "Poll", flag(False), flag(False)),
        op(2, "Poll", flag(True), flag(False)),
        op(1, "Leave"),
        op(0, "Withdraw", u8(0)),
    ]),
    "raw-frames": seq(0, [
        op(0, "Offer", u8(1), u16(8), u8(8)),
        op(1, "Raw", flag(True), frames[:200]),
        op(1, "Raw", flag(True), subscribe),
        op(1, "Raw", flag(False), b"CD\x01\x00\xff\xff\xff\x7f"),
        op(0, "Withdraw", u8(1)),
    ]),
}

out = os.path.join(here, "corpus/pool_manager")
os.makedirs(out, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
