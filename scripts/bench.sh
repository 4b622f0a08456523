#!/usr/bin/env bash
# Runs the benchmarks quoted in BENCHMARKS.md. The 1M-event fixture is built
# once under $TMPDIR (a few minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_CA_BUNDLE=
go test ./eventlog -run '^$' -bench 'Append$' -benchtime 100000x -count 5 2>/dev/null | grep -E '^Benchmark'
go test ./eventlog -run '^$' -bench 'AppendLatency' -benchtime 20000x -count 5 2>/dev/null | grep -E '^Benchmark'
go test ./eventlog -run '^$' -bench 'IdleRSS' -benchtime 1x -count 3 2>/dev/null | grep -E '^Benchmark'
go test ./projections -run '^$' -bench 'Rebuild' -benchtime 3x -count 3 2>/dev/null | grep -E '^Benchmark'
go test ./cmd/moltgate -run '^$' -bench 'ServeReady' -benchtime 5x -count 1 2>/dev/null | grep -E '^Benchmark'
go test ./eventlog -run '^$' -bench 'Restore' -benchtime 2x -count 1 2>/dev/null | grep -E '^Benchmark|MB/s'
go test ./api -run '^$' -bench 'TimeToFirstToken|PairApprove' -benchtime 300x -count 3 2>/dev/null | grep -E '^Benchmark'
go test ./api -run '^$' -bench 'ConcurrentSessions' -benchtime 1x -count 3 -timeout 20m 2>/dev/null | grep -E '^Benchmark'
go test ./api -run '^$' -bench ApproveAll -benchtime 3x 2>/dev/null | grep -E '^Benchmark'
go test ./eventlog -run '^$' -bench EventsPage -benchtime 300x 2>/dev/null | grep -E '^Benchmark'
go test ./projections -run '^$' -bench ReplayToMiddle -benchtime 3x 2>/dev/null | grep -E '^Benchmark'
