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
// driver with the same DSN (synchronous=FULL), 1000 rows a transaction.
// Both write b.N events, in ten alternating rounds, and the ratio of their
// rates is reported: on a shared machine only figures taken under the same
// load compare.
//
// The streams dimension matters: each stream's (stream, version) index leaf
// is a page the commit writes, so 64 appenders on 64 streams is the costly
// case and 64 appenders on one stream the cheap one.
func BenchmarkAppend(b *testing.B) {
	for _, streams := range []int{64, 1} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			raw := newRawInserter(b, streams)
			l := MustOpenLog(b)
			const rounds = 10
			var rawTime, logTime time.Duration
			for r := 0; r < rounds; r++ {
				n := b.N / rounds
				if r == 0 {
					n += b.N % rounds
				}
				rawTime += raw.insert(b, n)
				logTime += appendConcurrently(b, l, streams, n)
			}
			rawRate, logRate := float64(b.N)/rawTime.Seconds(), float64(b.N)/logTime.Seconds()
			b.ReportMetric(rawRate, "raw-events/s")
			b.ReportMetric(logRate, "log-events/s")
			b.ReportMetric(100*logRate/rawRate, "%-of-raw")
			b.ReportMetric(0, "ns/op") // covers both: meaningless
		})
	}
}

// rawInserter is the baseline: a plain prepared INSERT, 1000 rows a
// transaction, into a file with the log's schema.
type rawInserter struct {
	db      *sql.DB
	streams int
	done    int
}

func newRawInserter(b *testing.B, streams int) *rawInserter {
	path := filepath.Join(b.TempDir(), "raw.db")
	l := eventlog.NewLog(path) // creates the same schema
	if err := l.Open(); err != nil {
		b.Fatal(err)
	}
	l.Close(context.Background())
	// The log's writer never checkpoints in a commit; nor does the baseline.
	db, err := sql.Open("sqlite", eventlog.DSN(path, "_pragma=wal_autocheckpoint(0)"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	return &rawInserter{db: db, streams: streams}
}

func (r *rawInserter) insert(b *testing.B, n int) time.Duration {
	meta := []byte(`{"actor":"bench","source":"system"}`)
	start := time.Now()
	for end := r.done + n; r.done < end; {
		tx, err := r.db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		stmt, err := tx.Prepare(`INSERT INTO events (id, stream, version, type, schema, data, meta, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < 1000 && r.done < end; i++ {
			r.done++
			if _, err := stmt.Exec(moltgate.NewID(), fmt.Sprintf("s%d", r.done%r.streams), r.done/r.streams+1, "chat.message.added", 2, []byte(benchPayload), meta, time.Now().UnixMilli()); err != nil {
				b.Fatal(err)
			}
		}
		stmt.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// appendConcurrently appends n events, one per Append, from 64 goroutines
// that each wait for their append to be durable before the next.
func appendConcurrently(b *testing.B, l *eventlog.Log, streams, n int) time.Duration {
	meta := moltgate.Meta{Actor: "bench", Source: moltgate.SourceSystem}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			stream := fmt.Sprintf("s%d", w%streams)
			for next.Add(1) <= int64(n) {
				e := moltgate.Event{ID: moltgate.NewID(), Stream: stream, Type: "chat.message.added", Data: benchPayload, Meta: meta}
				if _, err := l.Append(context.Background(), e); err != nil {
					b.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	return time.Since(start)
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
// filter, and 100 events before a random time (which binary-searches seq:
// there is no index on recorded_at); p50 and p99 of each page.
func BenchmarkEventsPage(b *testing.B) {
	l := eventlog.NewLog(benchdata.Fixture(b, 1_000_000))
	l.ReadOnly = true
	if err := l.Open(); err != nil {
		b.Fatal(err)
	}
	defer l.Close(context.Background())
	ctx := context.Background()
	for _, page := range []string{"type=", "type=device.", "until=time"} {
		b.Run(page, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				before := int64(1 + (i*7919)%1_000_000)
				f := eventlog.Filter{UntilSeq: before, Desc: true, Limit: 100}
				switch page {
				case "type=device.":
					f.TypePrefix = "device."
				case "until=time":
					e, err := l.GetSeq(ctx, before)
					if err != nil {
						b.Fatal(err)
					}
					f = eventlog.Filter{Until: e.RecordedAt, Desc: true, Limit: 100}
				}
				start := time.Now()
				if _, err := l.Query(ctx, f); err != nil {
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
