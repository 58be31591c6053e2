#!/usr/bin/env bash
# The main job: prints this node's memory tiers, then runs the hydro example
# on them (HydroC's point blast on 200x200 cells until its shock has
# reflected from the walls, with its in-transit analyses: frames, plots and
# a summary in hydro-out/). Arguments go to `hydro` (see `hydro --help`), e.g.
#   bash scripts/run.sh --memory hbm,dram --topology mamba/tests/data/xeon-max-2s.xml
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -q -p mamba --bin mamba -p hydro --bin hydro
./target/release/mamba tiers
echo
./target/release/hydro "$@"
