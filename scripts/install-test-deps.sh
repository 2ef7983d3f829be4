#!/usr/bin/env bash
# Installs what the end-to-end tests run against, when it is missing, and exports where it is:
#   FLOWLAKE_TANSU_BIN  Tansu, a Kafka-API broker (cargo install, ~20 min on 2 cores, once)
#   FLOWLAKE_PYTHON     a venv python with moto (S3 server), duckdb, pyarrow, fastavro, confluent-kafka,
#                       kubernetes-validate and jsonschema (policy validation)
#   FLOWLAKE_PROMTOOL   promtool, unpacked from Debian's `prometheus` package (no service started)
#   FLOWLAKE_PROMETHEUS the Prometheus server of the same package (tests start it on loopback)
# and checks the C toolchain that librdkafka's build (rdkafka-sys) needs.
#
# Idempotent and quick when everything is there. Run it (`bash scripts/install-test-deps.sh`)
# or source it (scripts/test.sh does, so the exports reach the tests).
# Cache: ${FLOWLAKE_CACHE:-$HOME/.cache/flowlake}. Needs only crates.io, PyPI and Debian's apt.
set -euo pipefail

_fl_log() { printf '[test-deps] %s\n' "$*" >&2; }
_fl_die() { printf '[test-deps] error: %s\n' "$*" >&2; return 1; }

# Runs a command as root: directly when we are root, else through sudo.
_fl_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else _fl_die "need root for: $*"; fi
}

_FL_APT_UPDATED=0
_fl_apt_update() {
  if [ "$_FL_APT_UPDATED" -eq 0 ]; then
    _fl_log "apt-get update"
    _fl_root apt-get update -qq >&2
    _FL_APT_UPDATED=1
  fi
}

_fl_apt_install() {
  _fl_log "apt-get install $*"
  # A stale or empty package list is the usual reason an install fails on a fresh machine.
  if ! _fl_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2; then
    _fl_apt_update
    _fl_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
  fi
}

# True while some process is running `cargo install tansu` (a developer's, or an earlier run's).
_fl_tansu_install_running() {
  local f cmd
  for f in /proc/[0-9]*/cmdline; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$f") || continue
    if [[ $cmd =~ ^[^\ ]*cargo\ install\ .*tansu ]]; then
      return 0
    fi
  done
  return 1
}

# Tansu with the storage engines the tests use: memory:// (dynostore) and sqlite:// (libsql).
_fl_tansu_ok() {
  local bin=$1 help
  [ -x "$bin" ] || return 1
  help=$("$bin" --help 2>&1) || return 1
  grep -q 'Storage engines:.*dynostore' <<<"$help" && grep -q 'Storage engines:.*libsql' <<<"$help"
}

_fl_install_tansu() {
  local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin" bin="" waited=0 log
  if [ -n "${FLOWLAKE_TANSU_BIN:-}" ] && _fl_tansu_ok "$FLOWLAKE_TANSU_BIN"; then
    bin=$FLOWLAKE_TANSU_BIN
  elif command -v tansu >/dev/null 2>&1 && _fl_tansu_ok "$(command -v tansu)"; then
    bin=$(command -v tansu)
  elif _fl_tansu_ok "$cargo_bin/tansu"; then
    bin=$cargo_bin/tansu
  fi

  if [ -z "$bin" ] && _fl_tansu_install_running; then
    _fl_log "tansu: another 'cargo install tansu' is running; waiting for it (up to 45 min)"
    while _fl_tansu_install_running && [ "$waited" -lt 2700 ]; do
      sleep 10
      waited=$((waited + 10))
    done
    if _fl_tansu_ok "$cargo_bin/tansu"; then bin=$cargo_bin/tansu; fi
  fi

  if [ -z "$bin" ]; then
    command -v cargo >/dev/null 2>&1 || _fl_die "cargo not found: install Rust (rustup) first"
    log="$FLOWLAKE_CACHE/tansu-install.log"
    _fl_log "tansu: cargo install tansu --locked --features dynostore,libsql (takes ~20 min on 2 cores; log: $log)"
    # --force replaces a tansu built without the storage engines we need.
    if ! cargo install tansu --locked --force --features dynostore,libsql >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      _fl_die "cargo install tansu failed (full log: $log)"
    fi
    _fl_tansu_ok "$cargo_bin/tansu" || _fl_die "tansu installed but $cargo_bin/tansu does not run or lacks dynostore/libsql"
    bin=$cargo_bin/tansu
  fi
  FLOWLAKE_TANSU_BIN=$bin
  _fl_log "tansu: $bin ($("$bin" --version 2>&1 | head -n 1))"
}

_fl_install_python() {
  local venv="$FLOWLAKE_CACHE/venv" req="$_FL_ROOT/tests/py/requirements.txt" marker want have=""
  local base="${FLOWLAKE_BASE_PYTHON:-python3}"
  [ -f "$req" ] || _fl_die "missing $req"
  command -v "$base" >/dev/null 2>&1 || _fl_die "$base not found: install Python 3.10+ first"

  # The marker holds a hash of the requirements and the interpreter, so either change reinstalls.
  marker="$venv/.flowlake-requirements.sha256"
  want=$( { cat "$req"; "$base" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)
  if [ -f "$marker" ]; then have=$(cat "$marker"); fi

  if [ "$have" != "$want" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
      _fl_log "python: creating venv $venv"
      rm -rf "$venv"
      "$base" -m venv "$venv"
    fi
    _fl_log "python: pip install -r tests/py/requirements.txt"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
    "$venv/bin/python" -c 'import duckdb, pyarrow, pyarrow.fs, fastavro, confluent_kafka, moto, boto3, jsonschema, yaml, kubernetes_validate' \
      || _fl_die "python packages installed but do not import"
    [ -x "$venv/bin/moto_server" ] || _fl_die "moto_server missing from $venv/bin"
    [ -x "$venv/bin/kubernetes-validate" ] || _fl_die "kubernetes-validate missing from $venv/bin"
    printf '%s\n' "$want" >"$marker"
  fi
  FLOWLAKE_PYTHON=$venv/bin/python
  _fl_log "python: $FLOWLAKE_PYTHON ($("$FLOWLAKE_PYTHON" --version 2>&1), requirements up to date)"
}

_fl_install_prometheus() {
  local dest="$FLOWLAKE_CACHE/prometheus" tmp
  if [ -n "${FLOWLAKE_PROMTOOL:-}" ] && [ -x "$FLOWLAKE_PROMTOOL" ] \
    && [ -n "${FLOWLAKE_PROMETHEUS:-}" ] && [ -x "$FLOWLAKE_PROMETHEUS" ]; then
    :
  elif command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    FLOWLAKE_PROMTOOL=$(command -v promtool)
    FLOWLAKE_PROMETHEUS=$(command -v prometheus)
  else
    if ! [ -x "$dest/usr/bin/promtool" ] || ! [ -x "$dest/usr/bin/prometheus" ]; then
      command -v apt-get >/dev/null 2>&1 || _fl_die "promtool/prometheus not found and no apt-get to fetch Debian's prometheus package"
      tmp=$(mktemp -d)
      _fl_log "prometheus: apt-get download prometheus, unpacked into $dest"
      # Download only: unpacking the .deb ourselves installs no service and needs no root.
      if ! (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root prometheus >&2); then
        _fl_apt_update
        (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root prometheus >&2)
      fi
      dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
      # promtool checks metrics and rules; the server proves the dashboards' queries (its
      # HTTP API needs none of the web assets, which are left out).
      rm -rf "$dest"
      mkdir -p "$dest/usr/bin"
      mv "$tmp/root/usr/bin/promtool" "$tmp/root/usr/bin/prometheus" "$dest/usr/bin/"
      rm -rf "$tmp"
    fi
    FLOWLAKE_PROMTOOL=$dest/usr/bin/promtool
    FLOWLAKE_PROMETHEUS=$dest/usr/bin/prometheus
  fi
  "$FLOWLAKE_PROMTOOL" --version >/dev/null 2>&1 || _fl_die "$FLOWLAKE_PROMTOOL --version failed"
  "$FLOWLAKE_PROMETHEUS" --version >/dev/null 2>&1 || _fl_die "$FLOWLAKE_PROMETHEUS --version failed"
  _fl_log "promtool: $FLOWLAKE_PROMTOOL ($("$FLOWLAKE_PROMTOOL" --version 2>&1 | head -n 1))"
  _fl_log "prometheus: $FLOWLAKE_PROMETHEUS ($("$FLOWLAKE_PROMETHEUS" --version 2>&1 | head -n 1))"
}

# librdkafka is built from source by rdkafka-sys (./configure && make, no cmake): it needs a C
# compiler, make, perl and pkg-config, plus zlib; python3 (optional) for its linker script.
# Other C libraries only when a -sys crate in Cargo.lock asks for the system copy.
_fl_check_build_deps() {
  local pkgs=() lock="$_FL_ROOT/Cargo.lock"
  command -v cc >/dev/null 2>&1 || pkgs+=(gcc g++ libc6-dev)
  command -v make >/dev/null 2>&1 || pkgs+=(make)
  command -v perl >/dev/null 2>&1 || pkgs+=(perl)
  command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
  [ -f /usr/include/zlib.h ] || pkgs+=(zlib1g-dev)
  if [ -f "$lock" ]; then
    if grep -q '^name = "openssl-sys"' "$lock" && ! [ -f /usr/include/openssl/ssl.h ]; then pkgs+=(libssl-dev); fi
    if grep -q '^name = "sasl2-sys"' "$lock" && ! [ -f /usr/include/sasl/sasl.h ]; then pkgs+=(libsasl2-dev); fi
    if grep -q '^name = "curl-sys"' "$lock" && ! [ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] \
      && ! [ -f /usr/include/curl/curl.h ]; then pkgs+=(libcurl4-openssl-dev); fi
  fi
  if [ "${#pkgs[@]}" -gt 0 ]; then
    _fl_apt_install "${pkgs[@]}"
  fi
  _fl_log "build deps: cc, make, perl, pkg-config, zlib$(grep -q '^name = "openssl-sys"' "$lock" 2>/dev/null && echo ', openssl') present"
}

_fl_main() {
  local lock_fd
  _FL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  FLOWLAKE_CACHE=${FLOWLAKE_CACHE:-$HOME/.cache/flowlake}
  mkdir -p "$FLOWLAKE_CACHE"
  # Two test runs at once must not install into the same cache together.
  exec {lock_fd}>"$FLOWLAKE_CACHE/.install.lock"
  flock "$lock_fd"
  _fl_check_build_deps
  _fl_install_tansu
  _fl_install_python
  _fl_install_prometheus
  exec {lock_fd}>&-
  export FLOWLAKE_CACHE FLOWLAKE_TANSU_BIN FLOWLAKE_PYTHON FLOWLAKE_PROMTOOL FLOWLAKE_PROMETHEUS
  printf 'FLOWLAKE_TANSU_BIN=%s\nFLOWLAKE_PYTHON=%s\nFLOWLAKE_PROMTOOL=%s\nFLOWLAKE_PROMETHEUS=%s\n' \
    "$FLOWLAKE_TANSU_BIN" "$FLOWLAKE_PYTHON" "$FLOWLAKE_PROMTOOL" "$FLOWLAKE_PROMETHEUS"
}

_fl_main
