package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/benchdata"
	"github.com/moltgate/moltgate/internal/fakes3"
)

// startContainer runs the image's binary as the container runs it (on
// 0.0.0.0, with a token and the R2 variables, on an empty disk): see
// startBinary.
func startContainer(b *testing.B, vars map[string]string, idle time.Duration) (time.Duration, procMemory) {
	env := map[string]string{"MOLTGATE_DATA_DIR": filepath.Join(b.TempDir(), "data"), "MOLTBOT_GATEWAY_TOKEN": "bench-token-0123456789abcdef",
		"MOLTGATE_SECRET_KEY": strings.Repeat("ab", 32), "AWS_CA_BUNDLE": ""}
	for k, v := range vars {
		env[k] = v
	}
	return startBinary(b, dockerfileBinary(b), env, "0.0.0.0", idle)
}

// emptyReplicas counts the replica prefixes freshPrefix handed out.
var emptyReplicas atomic.Int64

// freshPrefix is a replica prefix no start has written to: each start
// leaves its events in the replica, so a start on "an empty replica" needs
// its own.
func freshPrefix(name string) string { return fmt.Sprintf("%s-%d", name, emptyReplicas.Add(1)) }

// BenchmarkContainerStart measures a container's start (a wake from sleep)
// to /readyz 200 with the binary built as the Dockerfile builds it: on an
// empty replica, and on a replica of 100,000 events, which it restores
// from S3 (gofakes3 on loopback) and replays first.
func BenchmarkContainerStart(b *testing.B) {
	s3 := fakes3.New(b)
	run := func(b *testing.B, prefix func() string) {
		var times []time.Duration
		var rss []float64
		for i := 0; i < b.N; i++ {
			d, r := startContainer(b, s3.Env(prefix()), 0)
			times, rss = append(times, d), append(rss, r.RSS)
		}
		reportStarts(b, times, rss)
	}
	b.Run("empty-replica", func(b *testing.B) { run(b, func() string { return freshPrefix("empty") }) })
	fixture := benchdata.Fixture(b, 100_000)
	path := filepath.Join(b.TempDir(), "seed.db")
	benchdata.Copy(b, fixture, path)
	l := eventlog.NewLog(path)
	cfg := s3.Config("100k")
	l.Replica = &cfg
	if err := l.Open(); err != nil {
		b.Fatal(err)
	}
	if err := l.SnapshotNow(context.Background()); err != nil {
		b.Fatal(err)
	}
	l.Close(context.Background())
	b.Run("100k-replica", func(b *testing.B) { run(b, func() string { return "100k" }) })
}

// BenchmarkIdleRSS is the container's resident memory a few seconds after
// start, idle, with replication on (gofakes3) and, as the baseline in the
// same run, without a replica: all of it, and its anonymous and
// file-backed parts (see procMemory).
func BenchmarkIdleRSS(b *testing.B) {
	s3 := fakes3.New(b)
	for _, tc := range []struct {
		name string
		vars func() map[string]string
	}{
		{"no-replica", func() map[string]string { return nil }},
		{"replica", func() map[string]string { return s3.Env(freshPrefix("idle")) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var rss, anon, file []float64
			for i := 0; i < b.N; i++ {
				_, m := startContainer(b, tc.vars(), 3*time.Second)
				rss, anon, file = append(rss, m.RSS), append(anon, m.Anon), append(file, m.File)
			}
			for unit, v := range map[string][]float64{"rss-MB": rss, "anon-MB": anon, "file-MB": file} {
				slices.Sort(v)
				b.ReportMetric(v[len(v)/2], unit)
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}
