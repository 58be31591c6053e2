#!/usr/bin/env bash
# Installs what the workspace needs on a fresh Debian 12 machine (as root, or
# with sudo): hwloc headers for topology discovery, libudev (hwloc links it),
# pkg-config, libfabric headers and libclang (the fabric crate generates its
# bindings with bindgen at build time), iproute2 (the fabric crate's
# two-namespace test), gcc, g++ and gfortran (the C, C++ and Fortran
# examples of mamba-capi's tests), openmpi-bin (mpirun and, with it, the
# PMIx run-time library: cdo's launcher test and PMIx wire-up), python3 with
# venv (the Python bindings' tests build them in a virtual environment).
# Does nothing when everything is already there.
set -euo pipefail

need=()
for pkg in libhwloc-dev libudev-dev pkg-config libfabric-dev libclang-dev iproute2 gcc g++ gfortran openmpi-bin python3 python3-venv; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
