package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/fakes3"
	"github.com/moltgate/moltgate/projections"
)

// TestMain lets a test run the real binary: the test executable re-runs
// itself with MOLTGATE_RUN_MAIN=1 and becomes moltgate. It also makes the
// directory the benchmarks build binaries into, and removes it.
func TestMain(m *testing.M) {
	if os.Getenv("MOLTGATE_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "moltgate-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func testEnv(t testing.TB, extra map[string]string) (map[string]string, Env) {
	m := map[string]string{"MOLTGATE_DATA_DIR": filepath.Join(t.TempDir(), "data"), "MOLTGATE_LISTEN": "127.0.0.1:0"}
	for k, v := range extra {
		m[k] = v
	}
	return m, EnvFromMap(m)
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func mustOpenGateway(t testing.TB, env Env) *gateway {
	t.Helper()
	g := &gateway{env: env, logger: discardLogger(), stderr: io.Discard}
	if err := g.open(context.Background()); err != nil {
		t.Fatal(err)
	}
	return g
}

// someHistory appends a little of everything the read models care about.
func someHistory(t *testing.T, l *eventlog.Log, n int) {
	t.Helper()
	ctx := context.Background()
	meta := moltgate.Meta{Actor: "owner@example.com", Source: moltgate.SourceUI}
	for i := 0; i < n; i++ {
		dev := fmt.Sprintf("dev%d", i)
		req := fmt.Sprintf("req%d", i)
		events := []moltgate.Event{
			moltgate.MustEvent(moltgate.DeviceStream(dev), moltgate.EventDevicePairingRequested, moltgate.DevicePairingRequestedData{
				RequestID: req, DeviceID: dev, Role: "operator", Scopes: []string{"operator.read"}, ExpiresAtMs: time.Now().Add(time.Hour).UnixMilli()}, meta),
			moltgate.MustEvent(moltgate.SessionStream("main"), moltgate.EventChatMessageAdded, moltgate.ChatMessageAddedData{SessionKey: "main", Role: "user", Content: fmt.Sprint("hello ", i)}, meta),
			moltgate.MustEvent(moltgate.ChannelStream("telegram"), moltgate.EventChannelAllowlistChanged, moltgate.ChannelAllowlistChangedData{Channel: "telegram", Added: []string{fmt.Sprint(i)}}, meta),
		}
		if _, err := l.Append(ctx, events...); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			approve := moltgate.MustEvent(moltgate.DeviceStream(dev), moltgate.EventDevicePairingApproved, moltgate.DevicePairingApprovedData{RequestID: req, DeviceID: dev, Role: "operator", TokenHash: "h"}, meta)
			if _, err := l.AppendCritical(ctx, approve); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := moltgate.MustEvent(moltgate.StreamConfig, moltgate.EventConfigApplied, moltgate.ConfigAppliedData{Document: json.RawMessage(`{"agents":{}}`), Hash: "abc"}, meta)
	if _, err := l.AppendCritical(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

func viewJSON(t *testing.T, set *projections.Set, at time.Time) string {
	t.Helper()
	v := set.View(0, at)
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func allEvents(t *testing.T, l *eventlog.Log) []moltgate.Event {
	t.Helper()
	events, err := l.Query(context.Background(), eventlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// The cold start: a container loses its disk, starts again and gets back
// every acknowledged event and the same read models.
func TestServe_RestoresFromReplica(t *testing.T) {
	s3 := fakes3.New(t)
	vars, env := testEnv(t, s3.Env("cold-start"))

	g := mustOpenGateway(t, env)
	someHistory(t, g.log, 20)
	if err := g.log.SyncNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	// More after the last explicit sync: the shutdown's final sync ships them.
	someHistory(t, g.log, 3)
	if err := g.runner.WaitFor(context.Background(), g.log.LastSeq()); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	before := viewJSON(t, g.set, at)
	want := allEvents(t, g.log)
	if err := g.close(context.Background()); err != nil {
		t.Fatal(err)
	}

	if err := os.RemoveAll(vars["MOLTGATE_DATA_DIR"]); err != nil {
		t.Fatal(err)
	}
	g2 := mustOpenGateway(t, env)
	defer g2.close(context.Background())
	if g2.log.RestoredFrom() == "" {
		t.Fatal("the gateway did not restore from the replica")
	}
	got := allEvents(t, g2.log)
	if len(got) != len(want)+1 {
		t.Fatalf("restored %d events, want the %d acknowledged plus a new gateway.started", len(got), len(want))
	}
	for i, e := range want {
		if got[i].ID != e.ID || got[i].Seq != e.Seq || string(got[i].Data) != string(e.Data) {
			t.Fatalf("event %d differs after restore: got %+v want %+v", i, got[i], e)
		}
	}
	var started moltgate.GatewayStartedData
	if err := got[len(got)-1].Decode(&started); err != nil || started.RestoredFrom == "" || started.EventsReplayed != int64(len(want)) {
		t.Fatalf("gateway.started = %+v (%v)", started, err)
	}
	if after := viewJSON(t, g2.set, at); after != before {
		t.Fatalf("read models differ after restore:\nbefore %s\nafter  %s", before, after)
	}
}

func TestServe_DeadReplicaKeepsServing(t *testing.T) {
	s3 := fakes3.New(t)
	_, env := testEnv(t, s3.Env("dead"))
	g := mustOpenGateway(t, env)
	g.close(context.Background())

	s3.SetDown(true)
	g = mustOpenGateway(t, env)
	defer func() {
		// A shutdown against a dead bucket is bounded by its context.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		g.close(ctx)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("close took %s with a dead replica", d)
		}
	}()
	res, err := http.Get(g.server.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/readyz = %d with a dead replica, want 200", res.StatusCode)
	}
	g.log.CriticalWait = 200 * time.Millisecond
	someHistory(t, g.log, 1)
	g.log.SyncNow(context.Background())
	if st := g.log.Status(context.Background()); st.LastError == "" || st.LagEvents == 0 {
		t.Fatalf("status = %+v, want the error and the lag", st)
	}
}

func TestServe_BadReplicaConfig(t *testing.T) {
	yml := filepath.Join(t.TempDir(), "litestream.yml")
	os.WriteFile(yml, []byte("dbs:\n  - path: x.db\n    replica:\n      type: s3\n      bucket: b\n      sync-interval: soon\n"), 0o600)
	_, env := testEnv(t, map[string]string{"MOLTGATE_LITESTREAM_CONFIG": yml})
	g := &gateway{env: env, logger: slog.New(slog.NewTextHandler(io.Discard, nil)), stderr: io.Discard}
	err := g.open(context.Background())
	g.close(context.Background())
	if err == nil || !strings.Contains(err.Error(), "dbs[0].replica.sync-interval") {
		t.Fatalf("err = %v, want one naming dbs[0].replica.sync-interval", err)
	}
}

func TestServe_PartialR2ConfigNamesMissing(t *testing.T) {
	_, env := testEnv(t, map[string]string{"R2_ACCESS_KEY_ID": "k"})
	cfg, missing, err := env.Replica()
	if err != nil || cfg != nil || strings.Join(missing, ",") != "R2_SECRET_ACCESS_KEY,CF_ACCOUNT_ID" {
		t.Fatalf("Replica() = %v %v %v", cfg, missing, err)
	}
	// Serving still works: the log stays local and the log says why.
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())
	if st := g.log.Status(context.Background()); st.Configured {
		t.Fatalf("status = %+v", st)
	}
}

func runCLI(t *testing.T, env Env, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(context.Background(), env, args, &out, &errb); err != nil {
		t.Fatalf("moltgate %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

func TestCLI(t *testing.T) {
	s3 := fakes3.New(t)
	_, env := testEnv(t, s3.Env("cli"))
	g := mustOpenGateway(t, env)
	someHistory(t, g.log, 4) // seqs 2.. (1 is gateway.started)
	last := g.log.LastSeq()
	// The tools read beside a running gateway.
	t.Run("EventsListJSON", func(t *testing.T) {
		out := runCLI(t, env, "events", "list", "--json", "--type", "device.", "--limit", "0")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4+2 { // 4 requests + approvals of dev0 and dev3
			t.Fatalf("got %d device events:\n%s", len(lines), out)
		}
		var e moltgate.Event
		if err := json.Unmarshal([]byte(lines[0]), &e); err != nil || !strings.HasPrefix(e.Type, "device.") {
			t.Fatalf("first line %q: %v", lines[0], err)
		}
	})
	t.Run("EventsListTable", func(t *testing.T) {
		out := runCLI(t, env, "events", "list", "--stream", "config")
		if !strings.HasPrefix(out, "SEQ") || !strings.Contains(out, "config.applied") || !strings.Contains(out, "owner@example.com") {
			t.Fatalf("table:\n%s", out)
		}
	})
	t.Run("EventsShow", func(t *testing.T) {
		var e moltgate.Event
		if err := json.Unmarshal([]byte(runCLI(t, env, "events", "show", "1")), &e); err != nil || e.Type != moltgate.EventGatewayStarted {
			t.Fatalf("show 1 = %+v %v", e, err)
		}
		var errb bytes.Buffer
		if err := run(context.Background(), env, []string{"events", "show", "99999"}, io.Discard, &errb); err == nil || !strings.Contains(err.Error(), "no event") {
			t.Fatalf("show unknown: %v", err)
		}
	})
	t.Run("EventsTailFollow", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, env, []string{"events", "tail", "-n", "1", "-f", "--json"}, pw, io.Discard)
			pw.Close()
		}()
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		if !sc.Scan() {
			t.Fatal("no first line")
		}
		appended := moltgate.MustEvent("tail", "test.tailed", struct{}{}, moltgate.Meta{})
		if _, err := g.log.Append(context.Background(), appended); err != nil {
			t.Fatal(err)
		}
		if !sc.Scan() || !strings.Contains(sc.Text(), appended.ID) {
			t.Fatalf("tail -f printed %q, want the new event", sc.Text())
		}
		cancel()
		go io.Copy(io.Discard, pr)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Replay", func(t *testing.T) {
		var v moltgate.View
		if err := json.Unmarshal([]byte(runCLI(t, env, "replay", "--until", "4")), &v); err != nil {
			t.Fatal(err)
		}
		// Seqs 2-4 are the first batch: one request, one message, one allowlist entry.
		if v.Seq != 4 || len(v.Devices.Pending) != 1 || len(v.Sessions) != 1 || len(v.Channels.Allowlists["telegram"]) != 1 {
			t.Fatalf("replay --until 4 = %+v", v)
		}
		var errb bytes.Buffer
		if err := run(context.Background(), env, []string{"replay", "--until", "next tuesday"}, io.Discard, &errb); err == nil {
			t.Fatal("replay accepted a nonsense --until")
		}
		past := fmt.Sprint(g.log.LastSeq() + 100)
		if err := run(context.Background(), env, []string{"replay", "--until", past}, io.Discard, &errb); err == nil ||
			!strings.Contains(err.Error(), fmt.Sprintf("between 0 and %d", g.log.LastSeq())) {
			t.Fatalf("replay --until %s, past the newest event: %v", past, err)
		}
	})
	t.Run("ReplayUntilATime", func(t *testing.T) {
		// A time is judged by the events recorded at or before it.
		fourth, err := g.log.GetSeq(context.Background(), 4)
		if err != nil {
			t.Fatal(err)
		}
		at := fourth.RecordedAt
		want, _ := g.log.SeqAt(context.Background(), at)
		for _, c := range []struct {
			until   string
			wantSeq int64
		}{{at.Format(time.RFC3339Nano), want}, {"2000-01-01", 0}} {
			var v moltgate.View
			if err := json.Unmarshal([]byte(runCLI(t, env, "replay", "--until", c.until)), &v); err != nil {
				t.Fatal(err)
			}
			if v.Seq != c.wantSeq || (c.wantSeq > 0 && !v.At.Equal(at)) || (c.wantSeq == 0 && len(v.Sessions) != 0) {
				t.Errorf("replay --until %s = seq %d at %s, want seq %d", c.until, v.Seq, v.At, c.wantSeq)
			}
		}
	})
	t.Run("Restore", func(t *testing.T) {
		if err := g.log.SyncNow(context.Background()); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "r.db")
		msg := runCLI(t, env, "restore", "--output", out, "--seq", "5")
		if !strings.Contains(msg, "restored 5 events") {
			t.Fatalf("restore said %q", msg)
		}
		full := filepath.Join(t.TempDir(), "full.db")
		if msg := runCLI(t, env, "restore", "--output", full); !strings.Contains(msg, fmt.Sprintf("restored %d events", g.log.LastSeq())) {
			t.Fatalf("restore said %q (last seq %d, earlier %d)", msg, g.log.LastSeq(), last)
		}
	})
	g.close(context.Background())
	t.Run("RestoreWithoutReplica", func(t *testing.T) {
		_, bare := testEnv(t, nil)
		err := run(context.Background(), bare, []string{"restore", "--output", filepath.Join(t.TempDir(), "x.db")}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "R2_ACCESS_KEY_ID") {
			t.Fatalf("err = %v", err)
		}
	})
}

// The real process: SIGTERM (a container going to sleep) exits 0 after the
// final sync, and nothing acknowledged is lost.
func TestServe_SIGTERM(t *testing.T) {
	s3 := fakes3.New(t)
	vars, _ := testEnv(t, s3.Env("sigterm"))
	c := startChild(t, vars)
	c.cmd.Process.Signal(syscall.SIGTERM)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, c.stderr.String())
	}
	if l := restoredLog(t, s3.Config("sigterm")); l.LastSeq() != 1 {
		t.Fatalf("replica holds %d events after SIGTERM, want the gateway.started", l.LastSeq())
	}
}

// Backup now answers only when the replica holds everything: a restore
// from the bucket alone then has every event.
func TestAdmin_BackupNow(t *testing.T) {
	s3 := fakes3.New(t)
	extra := s3.Env("backup-now")
	extra["DEV_MODE"] = "true"
	_, env := testEnv(t, extra)
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())
	someHistory(t, g.log, 5)
	req, _ := http.NewRequest(http.MethodPost, g.server.URL()+"/api/admin/storage/sync", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("backup now = %d", res.StatusCode)
	}
	if l := restoredLog(t, s3.Config("backup-now")); l.LastSeq() != g.log.LastSeq() {
		t.Fatalf("the bucket holds %d events, the log %d", l.LastSeq(), g.log.LastSeq())
	}
	if st := g.log.Status(context.Background()); st.LastSnapshotAt.IsZero() {
		t.Fatal("no snapshot recorded")
	}
	// The storage card: bucket usage, restore points, no secret.
	res, err = http.Get(g.server.URL() + "/api/admin/storage")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `"objects":`) || !strings.Contains(string(body), `"restorePoints":[{`) || strings.Contains(string(body), fakes3.SecretAccessKey) {
		t.Fatalf("storage = %s", body)
	}
	res, _ = http.Get(g.server.URL() + "/api/admin/config")
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `"name":"R2_SECRET_ACCESS_KEY","readOnly":true`) || strings.Contains(string(body), fakes3.SecretAccessKey) {
		t.Fatalf("config environment = %s", body)
	}
}

func TestAdmin_Restart(t *testing.T) {
	_, env := testEnv(t, map[string]string{"DEV_MODE": "true"})
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())
	res, err := http.Post(g.server.URL()+"/api/admin/gateway/restart", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("restart = %d", res.StatusCode)
	}
	events, _ := g.log.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventGatewayRestarted})
	if len(events) != 1 || events[0].Meta.Actor != "dev-mode" {
		t.Fatalf("restart events = %+v", events)
	}
	// The agent serves again after the restart.
	if err := g.agent.Enqueue(moltgate.QueuedRun{SessionKey: "after-restart", RunID: "run-x"}); err != nil {
		t.Fatalf("enqueue after restart: %v", err)
	}
}

// A start that fails after the gateway was made (here the browser's
// configuration) returns the reason, and the shutdown of what was
// already open does not panic.
func TestServe_StartFailureAfterTheGatewayIsMade(t *testing.T) {
	_, env := testEnv(t, map[string]string{"BROWSER_CDP_URL": "ftp://nope"})
	err := run(t.Context(), env, []string{"serve"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "BROWSER_CDP_URL") {
		t.Fatalf("serve with a bad BROWSER_CDP_URL = %v, want an error naming it", err)
	}
}

// With Cloudflare Access configured, the gateway refreshes Access's keys
// in the background until it is closed, not for the life of the process.
func TestServe_CloseStopsTheAccessKeyRefresh(t *testing.T) {
	certs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"keys":[]}`)
	}))
	defer certs.Close()
	refreshers := func() int {
		buf := make([]byte, 1<<20)
		return strings.Count(string(buf[:runtime.Stack(buf, true)]), "jwkset.NewStorageFromHTTP")
	}
	before := refreshers()
	_, env := testEnv(t, map[string]string{"CF_ACCESS_TEAM_DOMAIN": certs.URL, "CF_ACCESS_AUD": "aud"})
	g := mustOpenGateway(t, env)
	if refreshers() == before {
		t.Fatal("no key refresh runs: the test no longer sees it")
	}
	g.close(context.Background())
	waitFor(t, "the key refresh to stop", func() bool { return refreshers() == before })
}

// Help is there however it is asked for: `help`, -h and --help print the
// commands; `serve -h` (serve has no flags of its own) prints them too,
// and an unknown command is an error that shows them.
func TestRun_Help(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"serve", "-h"}, {"serve", "--help"}} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), EnvFromMap(nil), args, &stdout, &stderr)
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v: %v", args, err)
		}
		if out := stdout.String() + stderr.String(); !strings.Contains(out, "Usage:") || !strings.Contains(out, "moltgate events") {
			t.Errorf("%v printed %q, want the usage", args, out)
		}
	}
	var stderr bytes.Buffer
	if err := run(context.Background(), EnvFromMap(nil), []string{"nonsense"}, io.Discard, &stderr); err == nil || !strings.Contains(stderr.String(), "Usage:") {
		t.Errorf("an unknown command = %v, %q; want an error and the usage", err, stderr.String())
	}
}
