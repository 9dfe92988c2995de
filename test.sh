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
go test -race -count=1 "$@" ./...
