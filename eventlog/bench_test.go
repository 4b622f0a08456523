package eventlog_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/benchdata"
	"github.com/moltgate/moltgate/internal/fakes3"
)

// benchPayload is a typical chat message payload (~150 bytes).
var benchPayload = json.RawMessage(`{"sessionKey":"main","messageId":"m-0001","role":"user","content":"Remind me to water the plants tomorrow at eight, and add milk to the list."}`)

// BenchmarkAppend compares group-committed appends from 64 concurrent
// appenders with the raw baseline: a batched INSERT loop through the same
// driver with the same pragmas (synchronous=FULL), 1000 rows a transaction.
// The figure to compare is events/s; BENCHMARKS.md quotes their ratio.
//
// The streams dimension matters: each stream's (stream, version) index leaf
// is a page the commit writes, so 64 appenders on 64 streams is the costly
// case and 64 appenders on one stream the cheap one.
func BenchmarkAppend(b *testing.B) {
	for _, streams := range []int{64, 1} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) { benchmarkAppend(b, streams) })
	}
}

func benchmarkAppend(b *testing.B, streams int) {
	b.Run("raw-batched-insert", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "raw.db")
		l := eventlog.NewLog(path) // creates the same schema
		if err := l.Open(); err != nil {
			b.Fatal(err)
		}
		l.Close(context.Background())
		db, err := sql.Open("sqlite", eventlog.DSN(path))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		meta := []byte(`{"actor":"bench","source":"system"}`)
		b.ResetTimer()
		start := time.Now()
		for done := 0; done < b.N; {
			tx, err := db.Begin()
			if err != nil {
				b.Fatal(err)
			}
			stmt, err := tx.Prepare(`INSERT INTO events (id, stream, version, type, schema, data, meta, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < 1000 && done < b.N; i++ {
				done++
				if _, err := stmt.Exec(moltgate.NewID(), fmt.Sprintf("s%d", done%streams), done/streams+1, "chat.message.added", 2, []byte(benchPayload), meta, time.Now().UnixMilli()); err != nil {
					b.Fatal(err)
				}
			}
			stmt.Close()
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
	b.Run("log-64-appenders", func(b *testing.B) {
		l := MustOpenLog(b)
		meta := moltgate.Meta{Actor: "bench", Source: moltgate.SourceSystem}
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for w := 0; w < 64; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				stream := fmt.Sprintf("s%d", w%streams)
				for next.Add(1) <= int64(b.N) {
					e := moltgate.Event{ID: moltgate.NewID(), Stream: stream, Type: "chat.message.added", Data: benchPayload, Meta: meta}
					if _, err := l.Append(context.Background(), e); err != nil {
						b.Error(err)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
}

// BenchmarkAppendLatency appends one event at a time from one goroutine
// (light load) and reports the p50 and p99 of each durable append.
func BenchmarkAppendLatency(b *testing.B) {
	l := MustOpenLog(b)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := moltgate.Event{ID: moltgate.NewID(), Stream: "latency", Type: "chat.message.added", Data: benchPayload}
		t := time.Now()
		if _, err := l.Append(context.Background(), e); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRestore restores a 1,000,000-event log from an S3 server on
// loopback (gofakes3, in memory) and reports the time and throughput.
func BenchmarkRestore(b *testing.B) {
	s3 := fakes3.New(b)
	cfg := s3.Config("bench-restore")
	path := filepath.Join(b.TempDir(), "m.db")
	benchdata.Copy(b, benchdata.Fixture(b, 1_000_000), path)
	l := eventlog.NewLog(path)
	l.Replica = &cfg
	if err := l.Open(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := l.SnapshotNow(ctx); err != nil {
		b.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		out := filepath.Join(b.TempDir(), "restored.db")
		if err := eventlog.Restore(ctx, cfg, eventlog.RestoreOptions{OutputPath: out}); err != nil {
			b.Fatal(err)
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(per.Seconds(), "s/restore")
	b.ReportMetric(float64(st.Size())/(1<<20)/per.Seconds(), "MB/s")
	b.ReportMetric(float64(st.Size())/(1<<20), "db-MB")
}

// BenchmarkEventsPage serves the admin's events page on a 1M-event log:
// 100 events before a random seq, newest first, with and without a type
// filter; p50 and p99 of each page.
func BenchmarkEventsPage(b *testing.B) {
	l := eventlog.NewLog(benchdata.Fixture(b, 1_000_000))
	l.ReadOnly = true
	if err := l.Open(); err != nil {
		b.Fatal(err)
	}
	defer l.Close(context.Background())
	for _, typ := range []string{"", "device."} {
		b.Run("type="+typ, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				before := int64(1 + (i*7919)%1_000_000)
				start := time.Now()
				if _, err := l.Query(context.Background(), eventlog.Filter{TypePrefix: typ, UntilSeq: before, Desc: true, Limit: 100}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
