#!/usr/bin/env bash
# Runs the benchmarks quoted in BENCHMARKS.md, in its order. The 100k- and
# 1M-event fixtures are built once under $TMPDIR (about a minute the first
# time). The browser benchmarks need Chromium (./scripts/test.sh installs
# it). Run it on a quiet machine: it takes about 15 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_CA_BUNDLE=
bench() { go test "$@" 2>/dev/null | grep -E '^Benchmark|ns/op' || true; }

# Event log, read models, restore
bench ./eventlog -run '^$' -bench 'Append$' -benchtime 100000x -count 5
bench ./eventlog -run '^$' -bench 'AppendLatency' -benchtime 20000x -count 5
bench ./eventlog -run '^$' -bench 'IdleRSS' -benchtime 1x -count 3
bench ./projections -run '^$' -bench 'Rebuild' -benchtime 3x -count 3 -timeout 30m
bench ./eventlog -run '^$' -bench 'Restore' -benchtime 2x -count 1 -timeout 30m

# moltgate serve and the container
bench ./cmd/moltgate -run '^$' -bench 'ServeReady' -benchtime 5x -count 1 -timeout 30m
bench ./cmd/moltgate -run '^$' -bench 'ContainerStart|IdleRSS' -benchtime 3x -count 1 -timeout 30m

# Gateway
bench ./api -run '^$' -bench 'TimeToFirstToken|PairApprove' -benchtime 300x -count 3
bench ./api -run '^$' -bench 'ConcurrentSessions' -benchtime 1x -count 3 -timeout 30m
bench . -run '^$' -bench 'FindCredentials' -count 5

# Admin
bench ./api -run '^$' -bench 'ApproveAll' -benchtime 3x -count 3
bench ./api -run '^$' -bench 'AdminStream' -benchtime 200x -count 3
bench ./eventlog -run '^$' -bench 'EventsPage' -benchtime 300x -count 3
bench ./projections -run '^$' -bench 'ReplayToMiddle' -benchtime 3x -count 3

# Chat platforms
bench ./cmd/moltgate -run '^$' -bench 'ChannelReply' -benchtime 50x -count 3
bench ./cmd/moltgate -run '^$' -bench 'ChannelLoad' -benchtime 1x -count 3 -timeout 30m

# Browser
bench ./browser -run '^$' -bench 'Screenshot' -benchtime 10x -count 3 -timeout 30m
bench ./browser -run '^$' -bench 'CDPProxy' -benchtime 2000x -count 3 -timeout 30m
