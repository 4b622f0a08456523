package projections_test

import (
	"context"
	"runtime"
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
