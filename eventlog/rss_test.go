package eventlog_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/fakes3"
)

// rssSpec tells the idle-memory probe what to start.
type rssSpec struct {
	Mode    string                  // "process", "log" or "replica"
	Path    string                  // the log file
	Replica *eventlog.ReplicaConfig // for "replica"
}

// rssReport is what the probe measured once idle.
type rssReport struct {
	RSS      int64 // kB, from /proc/self/status, after a GC
	Anon     int64 // kB, the anonymous part of RSS
	Peak     int64 // kB, VmHWM: the most RSS ever
	Released int64 // kB, RSS once the runtime has returned free memory
	// HeapInuse is Go's live heap; GoSys all memory the Go runtime holds.
	HeapInuse, GoSys uint64
}

// BenchmarkIdleRSS measures what an empty log holds once started and idle,
// in a fresh process each: the bare test process, plus a log without a
// replica, plus a log replicating to S3 (gofakes3 in the parent process, on
// loopback, so that the S3 server's memory is not counted). Figures are
// resident set sizes after a GC, in MB; the differences between the cases
// are what the log and replication cost.
func BenchmarkIdleRSS(b *testing.B) {
	s3 := fakes3.New(b)
	for _, mode := range []string{"process", "log", "replica"} {
		b.Run(mode, func(b *testing.B) {
			var last rssReport
			for i := 0; i < b.N; i++ {
				spec := rssSpec{Mode: mode, Path: filepath.Join(b.TempDir(), "m.db")}
				if mode == "replica" {
					cfg := s3.Config(fmt.Sprintf("rss-%d", i))
					spec.Replica = &cfg
				}
				last = runRSSChild(b, spec)
			}
			b.ReportMetric(float64(last.RSS)/1024, "rss-MB")
			b.ReportMetric(float64(last.Released)/1024, "rss-released-MB")
			b.ReportMetric(float64(last.Peak)/1024, "peak-MB")
			b.ReportMetric(float64(last.Anon)/1024, "anon-MB")
			b.ReportMetric(float64(last.HeapInuse)/(1<<20), "go-heap-MB")
			b.ReportMetric(float64(last.GoSys)/(1<<20), "go-sys-MB")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func runRSSChild(tb testing.TB, spec rssSpec) rssReport {
	tb.Helper()
	buf, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MOLTGATE_RSS_CHILD="+string(buf))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("probe %s: %v: %s", spec.Mode, err, stderr.String())
	}
	var r rssReport
	if err := json.Unmarshal(out, &r); err != nil {
		tb.Fatalf("probe %s printed %q: %v", spec.Mode, out, err)
	}
	return r
}

// rssChild starts what spec says, lets it settle, and prints an rssReport.
func rssChild(specJSON string) {
	var spec rssSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if os.Getenv("MOLTGATE_RSS_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	ctx := context.Background()
	if spec.Mode != "process" {
		l := eventlog.NewLog(spec.Path)
		l.Replica = spec.Replica
		if err := l.Open(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer l.Close(ctx)
		// A gateway records its start: the log is not quite empty.
		if _, err := l.Append(ctx, moltgate.Event{ID: moltgate.NewID(), Stream: moltgate.StreamGateway, Type: moltgate.EventGatewayStarted, Data: json.RawMessage(`{"version":"probe"}`)}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if spec.Replica != nil {
			// Idle means replicating: wait for the first sync.
			deadline := time.Now().Add(30 * time.Second)
			for l.Status(ctx).LastSyncAt.IsZero() {
				if time.Now().After(deadline) {
					fmt.Fprintln(os.Stderr, "no sync:", l.Status(ctx).LastError)
					os.Exit(2)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	time.Sleep(3 * time.Second) // a few sync intervals of idling
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r := rssReport{HeapInuse: ms.HeapInuse, GoSys: ms.Sys - ms.HeapReleased}
	if p := os.Getenv("MOLTGATE_RSS_HEAPPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	r.RSS, r.Anon, r.Peak = procStatus("VmRSS"), procStatus("RssAnon"), procStatus("VmHWM")
	debug.FreeOSMemory()
	r.Released = procStatus("VmRSS")
	json.NewEncoder(os.Stdout).Encode(r)
}

// procStatus reads a kB figure from /proc/self/status.
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
