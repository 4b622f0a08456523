package projections_test

import (
	"context"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/benchdata"
	"github.com/moltgate/moltgate/projections"
)

// BenchmarkRebuild replays a 1,000,000-event log into every read model from
// scratch (no snapshots): the cold start after a restore. Besides the rate
// it reports the process's CPU time per event, which, unlike the rate,
// other tenants of a shared machine do not move much.
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
	start, cpu := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		set := projections.NewSet()
		n, err := projections.NewRunner(l, set.All()...).RunToEnd(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		total += n
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(total), "cpu-ns/event")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
