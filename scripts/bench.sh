#!/usr/bin/env bash
# Runs the benchmarks quoted in BENCHMARKS.md, in its order. The 100k- and
# 1M-event fixtures are built once under $TMPDIR (about a minute the first
# time). The browser benchmarks need Chromium (./scripts/test.sh installs
# it). Run it on a quiet machine: it takes about 15 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_CA_BUNDLE=
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# bench runs one go test line and shows its figures as they come (a
# library's log lines are left out). A run that fails, by b.Fatal, a panic
# or a build error, shows what says why and is remembered: the script goes
# on with the others and exits non-zero at the end.
failed=()
bench() {
	local status=(0)
	go test "$@" 2>&1 | tee "$tmp/out" | grep --line-buffered -E '^Benchmark|ns/op' || status=("${PIPESTATUS[@]}")
	if [ "${status[0]}" -ne 0 ]; then
		grep -E 'FAIL|^panic:|\.go:[0-9]+:' "$tmp/out" || tail -n 20 "$tmp/out"
		failed+=("go test $*")
	fi
}

# Event log, read models
bench ./eventlog -run '^$' -bench 'Append$' -benchtime 100000x -count 5
bench ./eventlog -run '^$' -bench 'AppendLatency' -benchtime 20000x -count 5
bench ./eventlog -run '^$' -bench 'IdleRSS' -benchtime 1x -count 3
bench ./projections -run '^$' -bench 'Rebuild' -benchtime 3x -count 3 -timeout 30m

# moltgate serve, the container, restore from S3
bench ./cmd/moltgate -run '^$' -bench 'ServeReady' -benchtime 5x -count 1 -timeout 30m
bench ./cmd/moltgate -run '^$' -bench 'ContainerStart|IdleRSS' -benchtime 3x -count 1 -timeout 30m
bench ./eventlog -run '^$' -bench 'Restore' -benchtime 2x -count 1 -timeout 30m

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

if [ ${#failed[@]} -gt 0 ]; then
	printf '\nbench.sh: %d of the runs failed:\n' "${#failed[@]}" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
