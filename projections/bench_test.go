package projections_test

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/benchdata"
	"github.com/moltgate/moltgate/projections"
)

// BenchmarkRebuild replays a 1,000,000-event log into every read model from
// scratch (no snapshots): the cold start after a restore.
func BenchmarkRebuild(b *testing.B) {
	path := benchdata.Fixture(b, 1_000_000)
	l := eventlog.NewLog(path)
	l.ReadOnly = true
	if err := l.Open(); err != nil {
		b.Fatal(err)
	}
	defer l.Close(context.Background())
	b.ResetTimer()
	var total int64
	start := time.Now()
	for i := 0; i < b.N; i++ {
		set := projections.NewSet()
		n, err := projections.NewRunner(l, set.All()...).RunToEnd(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		total += n
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "events/s")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
}

// BenchmarkReplayToMiddle is the admin's time machine on a 1M-event log:
// every read model as it was at seq 500,000.
func BenchmarkReplayToMiddle(b *testing.B) {
	l := eventlog.NewLog(benchdata.Fixture(b, 1_000_000))
	l.ReadOnly = true
	if err := l.Open(); err != nil {
		b.Fatal(err)
	}
	defer l.Close(context.Background())
	var times []time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		set := projections.NewSet()
		if _, err := projections.NewRunner(l, set.All()...).RunUntil(context.Background(), 500_000); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(times[len(times)-1].Milliseconds()), "max-ms")
}
