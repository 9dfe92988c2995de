#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, go vet, then every test (fuzz seed corpora
# included) with the race detector. Needs Go; the SDK test also needs Node.js and npm.
set -euo pipefail
cd "$(dirname "$0")"

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
