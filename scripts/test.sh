#!/usr/bin/env bash
# Runs every test moltgate has, on a fresh machine: it installs what the
# tests need first. This is the command the README shows and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's Chromium drives the web UI and browser tests (chromedp); ffmpeg
# encodes the browser package's videos and ffprobe checks them; gcc is the
# C compiler that go test -race needs (the race detector is cgo).
if ! command -v chromium >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1 || ! command -v gcc >/dev/null 2>&1; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq chromium ffmpeg gcc >/dev/null
fi

# The real OpenClaw CLI (and the Node 24 it needs, as an npm package) for
# the compatibility test: pinned in compat/openclaw.
(cd compat/openclaw && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

# Go modules (through the module proxy).
go mod download

# These machines set AWS_CA_BUNDLE, which the AWS SDK inside Litestream
# refuses together with a custom HTTP client; the tests talk to a loopback
# S3 without TLS.
export AWS_CA_BUNDLE=

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 30m ./...

# The deploy path: the Worker's tests and typecheck, wrangler's dry run,
# the Dockerfile lint and the binary built with the Dockerfile's flags.
./scripts/test-deploy.sh
