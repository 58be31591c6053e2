"""Reads the hydro example's records live from a CDO pool manager and plots one.

Run a pool manager, this script, then hydro through the same manager (see
python/README.md). The script subscribes to the offers of the density
fields (`hydro/output/<seq>/rho`, float64, ny rows of nx cells, with the
record's step, time, nx, ny and dx as `hydro.*` attributes), demands each
as a read-only NumPy array over hydro's shared memory (no copy), records
the total mass and the density's extrema, and stops at hydro's
end-of-stream object (`hydro.end`) or after --records records. It then
plots the last density field and the mass over time with matplotlib, or,
without matplotlib, writes them as CSV files.
"""

import argparse
import csv
import pathlib

import numpy as np

import mambatiers as mt

SELECTOR = "name ~ '^hydro/output/[0-9]+(/rho)?$'"


def read_records(pool, limit, idle):
    """Yields (attributes, density) for each density field offered."""
    offers = pool.subscribe(SELECTOR, events=["offer"])
    seen = 0
    while limit is None or seen < limit:
        event = offers.wait(timeout=idle)
        if event is None:
            print(f"no record for {idle} s; stopping")
            return
        if event.attributes.get("hydro.end"):
            return
        if not event.name.endswith("/rho"):
            continue
        attrs = event.attributes
        handle = pool.declare(event.name)
        handle.require()
        try:
            view = handle.demand(timeout=5.0, dtype=np.float64,
                                 shape=(attrs["hydro.ny"], attrs["hydro.nx"]))
        except mt.CdoTimeoutError:
            # hydro withdrew the record before this process required it.
            handle.retract()
            handle.dispose()
            continue
        # Keep a copy: hydro reuses its memory once our view is gone.
        yield attrs, np.array(view)
        del view
        handle.dispose()
        seen += 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=None,
                        help="stop after this many records (default: hydro's end)")
    parser.add_argument("--idle", type=float, default=120.0,
                        help="seconds to wait for the next record")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("hydro-live"),
                        help="output directory")
    args = parser.parse_args()

    pool = mt.Pool()  # the pool manager that CDO_POOL_SOCKET names
    if pool.kind != "pool-manager":
        parser.error("set CDO_POOL_SOCKET and CDO_WORKFLOW_TOKEN to a pool manager's (cdo-pm prints them)")
    rows, last = [], None
    for attrs, rho in read_records(pool, args.records, args.idle):
        cell = attrs["hydro.dx"] ** 2
        rows.append((attrs["hydro.step"], attrs["hydro.time"], rho.sum() * cell, rho.min(), rho.max()))
        last = (attrs, rho)
        print("step {:6d}  t = {:.4f}  mass = {:.12g}  rho in [{:.3g}, {:.3g}]".format(*rows[-1]))
    if last is None:
        print("no record read")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    plot(args.out, rows, *last)


def plot(out, rows, attrs, rho):
    """The last density field and the mass over time: PNG with matplotlib, else CSV."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm
    except ImportError:
        np.savetxt(out / "density.csv", rho, delimiter=",")
        with open(out / "mass.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "time", "mass", "rho_min", "rho_max"])
            writer.writerows(rows)
        print(f"matplotlib not installed: wrote {out}/density.csv and {out}/mass.csv")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    extent = (0, attrs["hydro.nx"] * attrs["hydro.dx"], 0, attrs["hydro.ny"] * attrs["hydro.dx"])
    image = left.imshow(rho, origin="lower", extent=extent,
                        norm=LogNorm(vmin=max(rho.min(), 1e-3), vmax=rho.max()))
    fig.colorbar(image, ax=left, label="density")
    left.set(title=f"density, step {attrs['hydro.step']}, t = {attrs['hydro.time']:.3f}",
             xlabel="x", ylabel="y")
    times = [r[1] for r in rows]
    mass = np.array([r[2] for r in rows])
    right.plot(times, (mass - mass[0]) / mass[0], marker="o")
    right.set(title="relative drift of the mass", xlabel="time", ylabel="(M - M0) / M0")
    fig.tight_layout()
    fig.savefig(out / "hydro_live.png", dpi=100)
    print(f"wrote {out}/hydro_live.png")


if __name__ == "__main__":
    main()
