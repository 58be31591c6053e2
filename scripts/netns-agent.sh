#!/bin/sh
# mpirun's remote launch agent for a cluster of network namespaces on one
# machine (as root): `mpirun --mca plm_rsh_agent scripts/netns-agent.sh
# --host NS1,NS2 ...` runs each node's daemon inside the namespace named by
# its host name, in a UTS namespace whose host name is that name (the
# daemons' session directories under /tmp are named after the host, so
# they must differ). Called as `netns-agent.sh [options] HOST COMMAND...`;
# the options ssh would take are ignored.
set -eu
while [ "${1#-}" != "$1" ]; do shift; done
host=$1
shift
exec ip netns exec "$host" unshare --uts /bin/sh -c 'hostname "$0" && eval "$1"' "$host" "$*"
