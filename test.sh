#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, go vet, then every test (fuzz seed corpora
# included) with the race detector. Needs Go; installs Chromium, redis-server, Node.js and npm
# when they are missing (see need below).
set -euo pipefail
cd "$(dirname "$0")"

# need COMMAND PACKAGE...: the tests talk to real tools (a headless Chromium for the playground,
# redis-server for the Redis stores, Node.js and npm for Anam's browser SDK). When one is
# missing, its Debian packages are installed (as root, or with sudo); where that is not
# possible, the suite stops with the command to run.
apt_updated=
need() {
  local cmd=$1; shift
  command -v "$cmd" >/dev/null && return
  local sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  if command -v apt-get >/dev/null && { [ -z "$sudo" ] || command -v sudo >/dev/null; }; then
    echo "installing $* for the tests ($cmd is missing)" >&2
    if [ -z "$apt_updated" ]; then $sudo apt-get update -qq && apt_updated=1; fi
    if DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
      return
    fi
  fi
  echo "the tests need $cmd: apt-get install -y $*" >&2
  exit 1
}
need chromium chromium
need redis-server redis-server
need node nodejs npm
need npm npm

unformatted=$(gofmt -l cmd internal docs)
if [ -n "$unformatted" ]; then
  echo "gofmt would change these files:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
# The race detector sleeps a second before each test binary exits, so that a goroutine a test
# left running can still report a race; every test has passed or failed by then. Skipping it
# saves a second per package.
export GORACE="${GORACE:-atexit_sleep_ms=0}"
go test -race -count=1 "$@" ./...
