# Exports the orchestrator environment for a demo root built by demo/setup. Source it:
#   . demo/env.sh [DEMO_ROOT]          (bash, zsh; default var/demo under the checkout)
#   DEMO_ROOT=/path . demo/env.sh      (any POSIX sh)
_demo_root=${1:-${DEMO_ROOT:-}}
if [ -z "$_demo_root" ]; then
    if [ -n "${BASH_SOURCE:-}" ]; then
        # shellcheck disable=SC3054  # only reached in bash
        _demo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/var/demo"
    else
        _demo_root="$PWD/var/demo"
    fi
fi
_demo_root="$(cd "$_demo_root" && pwd)" || return 1
export DEMO_ROOT="$_demo_root"
export MENDER_ORCHESTRATOR_DATA_DIR="$_demo_root/share"
export MENDER_ORCHESTRATOR_DATASTORE_DIR="$_demo_root/datastore"
export MENDER_ORCHESTRATOR_TOPOLOGY_DIR="$_demo_root/datastore"
export MENDER_ORCHESTRATOR_CONF_DIR="$_demo_root/conf"
export ORCH_REBOOT_COMMAND=true
export ORCH_REBOOT_WAIT_SECONDS=0
unset _demo_root
