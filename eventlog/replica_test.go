package eventlog_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/fakes3"
)

func openReplicated(t *testing.T, path string, cfg eventlog.ReplicaConfig) *eventlog.Log {
	t.Helper()
	l := eventlog.NewLog(path)
	l.Replica = &cfg
	l.CriticalWait = 10 * time.Second
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func appendN(t *testing.T, l *eventlog.Log, n int, stream string) []moltgate.Event {
	t.Helper()
	var out []moltgate.Event
	for i := 0; i < n; i++ {
		got, err := l.Append(context.Background(), ev(stream, "t.x", 0, fmt.Sprintf(`{"i":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got...)
	}
	return out
}

func restoredSeqs(t *testing.T, path string) []int64 {
	t.Helper()
	l := eventlog.NewLog(path)
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	events, err := l.Query(context.Background(), eventlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	seqs := make([]int64, len(events))
	for i, e := range events {
		seqs[i] = e.Seq
	}
	return seqs
}

// CopyUntil's output holds its events in the file itself, not in a WAL
// beside it (Restore moves the file alone), even when another connection
// keeps SQLite from checkpointing as the copy closes.
func TestCopyUntil_LeavesNothingInTheWAL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	l := eventlog.NewLog(src)
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 20, "s")
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A connection that has read the (empty) copy holds it open.
	dst := filepath.Join(dir, "dst.db")
	empty := eventlog.NewLog(dst)
	if err := empty.Open(); err != nil {
		t.Fatal(err)
	}
	if err := empty.Close(ctx); err != nil {
		t.Fatal(err)
	}
	holder, err := sql.Open("sqlite", eventlog.DSN(dst))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	var n int
	if err := holder.QueryRow(`SELECT COUNT(*) FROM events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := eventlog.CopyUntil(ctx, src, dst, 12); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dst + "-wal"); err == nil && st.Size() != 0 {
		t.Fatalf("the copy's WAL holds %d bytes", st.Size())
	}
	moved := filepath.Join(t.TempDir(), "moved.db")
	buf, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(moved, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := restoredSeqs(t, moved); len(got) != 12 || got[11] != 12 {
		t.Fatalf("the copy's file alone holds seqs %v, want 1..12", got)
	}
}

func TestReplica_RestoreOnOpen(t *testing.T) {
	s3 := fakes3.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "data", "moltgate.db")

	l := openReplicated(t, path, s3.Config("restore-on-open"))
	appendN(t, l, 150, "chat")
	critical, err := l.AppendCritical(ctx, ev("config", moltgate.EventConfigApplied, 0, `{"hash":"h1"}`))
	if err != nil {
		t.Fatal(err)
	}
	// A critical append returns only once the replica holds it.
	if st := l.Status(ctx); st.ReplicatedSeq < critical[0].Seq {
		t.Fatalf("critical append returned before replication: %+v", st)
	}
	appendN(t, l, 49, "chat")
	if err := l.Close(ctx); err != nil { // the final sync ships the last 49
		t.Fatal(err)
	}

	if err := os.RemoveAll(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	l2 := openReplicated(t, path, s3.Config("restore-on-open"))
	if l2.RestoredFrom() == "" {
		t.Fatal("RestoredFrom is empty after a cold start")
	}
	if got := l2.LastSeq(); got != 200 {
		t.Fatalf("restored LastSeq = %d, want 200", got)
	}
	// The restored log keeps going where it stopped.
	more := appendN(t, l2, 1, "chat")
	if more[0].Seq != 201 {
		t.Fatalf("next seq after restore = %d", more[0].Seq)
	}
}

func TestReplica_PointInTime(t *testing.T) {
	s3 := fakes3.New(t)
	ctx := context.Background()
	cfg := s3.Config("pitr")
	l := openReplicated(t, filepath.Join(t.TempDir(), "m.db"), cfg)

	appendN(t, l, 30, "a")
	if err := l.SnapshotNow(ctx); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 20, "a")
	if err := l.SyncNow(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	mid := time.Now()
	time.Sleep(20 * time.Millisecond)
	appendN(t, l, 25, "b")
	if err := l.SyncNow(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("Seq", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "seq.db")
		if err := eventlog.Restore(ctx, cfg, eventlog.RestoreOptions{OutputPath: out, Seq: 42}); err != nil {
			t.Fatal(err)
		}
		got := restoredSeqs(t, out)
		if len(got) != 42 || got[41] != 42 {
			t.Fatalf("restored %d events ending at %v, want exactly 1..42", len(got), got[len(got)-1:])
		}
	})
	t.Run("Timestamp", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "ts.db")
		if err := eventlog.Restore(ctx, cfg, eventlog.RestoreOptions{OutputPath: out, Timestamp: mid}); err != nil {
			t.Fatal(err)
		}
		if got := restoredSeqs(t, out); len(got) != 50 {
			t.Fatalf("restored %d events at %s, want the 50 replicated before it", len(got), mid)
		}
	})
	t.Run("Latest", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "latest.db")
		if err := eventlog.Restore(ctx, cfg, eventlog.RestoreOptions{OutputPath: out}); err != nil {
			t.Fatal(err)
		}
		if got := restoredSeqs(t, out); len(got) != 75 {
			t.Fatalf("restored %d events, want 75", len(got))
		}
	})
	t.Run("TXID", func(t *testing.T) {
		// Litestream's first transaction holds the log as its first sync saw it.
		out := filepath.Join(t.TempDir(), "txid.db")
		if err := eventlog.Restore(ctx, cfg, eventlog.RestoreOptions{OutputPath: out, TXID: 1}); err != nil {
			t.Fatal(err)
		}
		if got := restoredSeqs(t, out); len(got) > 30 {
			t.Fatalf("restored %d events at txid 1, want at most the first 30", len(got))
		}
	})
	t.Run("RefusesExistingOutput", func(t *testing.T) {
		if err := eventlog.Restore(ctx, cfg, eventlog.RestoreOptions{OutputPath: l.Path}); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("restore over the live file: err = %v", err)
		}
	})
	t.Run("TwoPoints", func(t *testing.T) {
		err := eventlog.Restore(ctx, cfg, eventlog.RestoreOptions{OutputPath: filepath.Join(t.TempDir(), "x.db"), Seq: 3, TXID: 2})
		if err == nil || !strings.Contains(err.Error(), "at most one") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("EmptyReplica", func(t *testing.T) {
		err := eventlog.Restore(ctx, s3.Config("nothing-here"), eventlog.RestoreOptions{OutputPath: filepath.Join(t.TempDir(), "x.db")})
		if err != eventlog.ErrNoBackup {
			t.Fatalf("err = %v, want ErrNoBackup", err)
		}
	})
}

// A bucket that goes away, or starts refusing the keys, must not stop
// appends; Status must say so; replication catches up once it is back.
func TestReplica_Outage(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(s *fakes3.Server, on bool)
		want string
	}{
		{"Down", (*fakes3.Server).SetDown, "replica sync failed"},
		{"RefusesCredentials", (*fakes3.Server).SetRefuseCredentials, "InvalidAccessKeyId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s3 := fakes3.New(t)
			ctx := context.Background()
			cfg := s3.Config("outage")
			l := openReplicated(t, filepath.Join(t.TempDir(), "m.db"), cfg)
			l.CriticalWait = 300 * time.Millisecond
			appendN(t, l, 10, "a")
			if err := l.SyncNow(ctx); err != nil {
				t.Fatal(err)
			}

			tc.fail(s3, true)
			appendN(t, l, 10, "a")
			// Critical appends still succeed locally, after the bounded wait.
			if _, err := l.AppendCritical(ctx, ev("config", "config.applied", 0, `{}`)); err != nil {
				t.Fatalf("critical append during outage: %v", err)
			}
			if err := l.SyncNow(ctx); err == nil {
				t.Fatal("SyncNow succeeded against a failing bucket")
			}
			st := l.Status(ctx)
			if st.LastError == "" || !strings.Contains(st.LastError, tc.want) || st.LagEvents != 11 {
				t.Fatalf("status during outage = %+v, want an error containing %q and 11 events of lag", st, tc.want)
			}
			if strings.Contains(fmt.Sprint(st), fakes3.SecretAccessKey) {
				t.Fatal("status leaks the secret key")
			}

			tc.fail(s3, false)
			deadline := time.Now().Add(40 * time.Second)
			for l.Status(ctx).LagEvents > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("replication did not catch up: %+v", l.Status(ctx))
				}
				time.Sleep(100 * time.Millisecond)
			}
			if st := l.Status(ctx); st.LastError != "" {
				t.Fatalf("error not cleared after recovery: %+v", st)
			}
			out := filepath.Join(t.TempDir(), "after.db")
			if err := eventlog.Restore(ctx, cfg, eventlog.RestoreOptions{OutputPath: out}); err != nil {
				t.Fatal(err)
			}
			if got := restoredSeqs(t, out); len(got) != 21 {
				t.Fatalf("restored %d events after the outage, want 21", len(got))
			}
		})
	}
}

func TestReplica_NoneIsNormal(t *testing.T) {
	l := MustOpenLog(t)
	st := l.Status(context.Background())
	if st.Configured || st.LastError != "" {
		t.Fatalf("status without replica = %+v", st)
	}
	if err := l.SyncNow(context.Background()); err != eventlog.ErrNoReplica {
		t.Fatalf("SyncNow = %v, want ErrNoReplica", err)
	}
}

func TestReplica_BucketUsageAndRestorePoints(t *testing.T) {
	s3 := fakes3.New(t)
	ctx := context.Background()
	l := openReplicated(t, filepath.Join(t.TempDir(), "m.db"), s3.Config("usage"))
	appendN(t, l, 20, "a")
	if err := l.SnapshotNow(ctx); err != nil {
		t.Fatal(err)
	}
	usage, err := l.BucketUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := s3.ObjectCount(ctx, "usage/")
	if usage.Objects == 0 || usage.Objects != int64(want) || usage.Bytes == 0 {
		t.Fatalf("usage = %+v, bucket has %d objects", usage, want)
	}
	points, err := l.RestorePoints(ctx)
	if err != nil || len(points) == 0 || points[len(points)-1].CreatedAt.IsZero() {
		t.Fatalf("restore points = %+v %v", points, err)
	}
	if _, err := MustOpenLog(t).BucketUsage(ctx); err != eventlog.ErrNoReplica {
		t.Fatalf("without a replica: %v", err)
	}
}

// A bucket that does not exist is created at start; keys that may not
// create it get an error that says so first, and what to do.
func TestReplica_MissingBucket(t *testing.T) {
	ctx := context.Background()
	t.Run("Created", func(t *testing.T) {
		s3 := fakes3.NewEmpty(t)
		cfg := s3.Config("new-bucket")
		path := filepath.Join(t.TempDir(), "m.db")
		l := openReplicated(t, path, cfg)
		if !s3.BucketExists() {
			t.Fatal("the bucket was not created")
		}
		critical, err := l.AppendCritical(ctx, ev("config", moltgate.EventConfigApplied, 0, `{"hash":"h1"}`))
		if err != nil {
			t.Fatal(err)
		}
		if st := l.Status(ctx); st.ReplicatedSeq < critical[0].Seq || st.LastError != "" {
			t.Fatalf("status after the bucket was created = %+v", st)
		}
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "restored.db")
		if err := eventlog.Restore(ctx, cfg, eventlog.RestoreOptions{OutputPath: out}); err != nil {
			t.Fatal(err)
		}
		if got := restoredSeqs(t, out); len(got) != 1 {
			t.Fatalf("restored %d events, want 1", len(got))
		}
	})
	t.Run("CreationRefused", func(t *testing.T) {
		s3 := fakes3.NewEmpty(t)
		s3.SetRefuseCreateBucket(true)
		path := filepath.Join(t.TempDir(), "m.db")
		l := eventlog.NewLog(path)
		cfg := s3.Config("refused")
		l.Replica = &cfg
		err := l.Open()
		if err == nil {
			l.Close(ctx)
			t.Fatal("Open succeeded without a bucket")
		}
		msg := err.Error()
		if want := "the bucket moltbot-data does not exist at " + s3.URL; !strings.HasPrefix(msg, want) {
			t.Fatalf("error = %q, want it to start with %q", msg, want)
		}
		for _, want := range []string{"AccessDenied", "wrangler r2 bucket create moltbot-data"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error = %q, want it to mention %q", msg, want)
			}
		}
		if strings.Contains(msg, fakes3.SecretAccessKey) {
			t.Fatal("the error leaks the secret key")
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("a refused start left a log behind: %v", err)
		}
		if s3.BucketExists() {
			t.Fatal("the bucket exists although creation was refused")
		}
	})
	t.Run("CreationRefusedOnWarmStart", func(t *testing.T) {
		// With a local log the gateway keeps serving; Status says why the
		// replica is not written.
		s3 := fakes3.NewEmpty(t)
		s3.SetRefuseCreateBucket(true)
		path := filepath.Join(t.TempDir(), "m.db")
		local := eventlog.NewLog(path)
		if err := local.Open(); err != nil {
			t.Fatal(err)
		}
		local.Close(ctx)
		l := openReplicated(t, path, s3.Config("warm"))
		appendN(t, l, 1, "a")
		deadline := time.Now().Add(20 * time.Second)
		for !strings.HasPrefix(l.Status(ctx).LastError, "the bucket moltbot-data does not exist") {
			if time.Now().After(deadline) {
				t.Fatalf("status = %+v, want the missing bucket as its error", l.Status(ctx))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("UnreachableColdStartRefuses", func(t *testing.T) {
		// Starting empty could fork the history the replica holds.
		s3 := fakes3.New(t)
		s3.SetDown(true)
		l := eventlog.NewLog(filepath.Join(t.TempDir(), "m.db"))
		cfg := s3.Config("down")
		l.Replica = &cfg
		err := l.Open()
		if err == nil {
			l.Close(ctx)
			t.Fatal("a cold start against an unreachable replica succeeded")
		}
		if !strings.Contains(err.Error(), "refusing to start empty") {
			t.Fatalf("err = %v", err)
		}
	})
}

// Every restored file is owner-only, like the live file, whatever the umask.
func TestReplica_RestoredFilesAreOwnerOnly(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	s3 := fakes3.New(t)
	ctx := context.Background()
	cfg := s3.Config("modes")
	path := filepath.Join(t.TempDir(), "data", "m.db")
	l := openReplicated(t, path, cfg)
	appendN(t, l, 20, "a")
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	checkMode := func(t *testing.T, path string) {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", path, got)
		}
		leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".restore-*"))
		if len(leftovers) > 0 {
			t.Fatalf("restore left %v behind", leftovers)
		}
	}
	t.Run("Latest", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "latest.db")
		if err := eventlog.Restore(ctx, cfg, eventlog.RestoreOptions{OutputPath: out}); err != nil {
			t.Fatal(err)
		}
		checkMode(t, out)
	})
	t.Run("Seq", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "seq.db")
		if err := eventlog.Restore(ctx, cfg, eventlog.RestoreOptions{OutputPath: out, Seq: 5}); err != nil {
			t.Fatal(err)
		}
		checkMode(t, out)
		if got := restoredSeqs(t, out); len(got) != 5 {
			t.Fatalf("restored %d events, want 5", len(got))
		}
	})
	t.Run("OnOpen", func(t *testing.T) {
		if err := os.RemoveAll(filepath.Dir(path)); err != nil {
			t.Fatal(err)
		}
		l2 := openReplicated(t, path, cfg)
		if l2.RestoredFrom() == "" {
			t.Fatal("the log was not restored")
		}
		checkMode(t, path)
	})
}
