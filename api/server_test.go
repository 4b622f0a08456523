package api_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/moltgate/moltgate/api"
)

func get(t *testing.T, url, accept string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestServer_Readiness(t *testing.T) {
	s := api.NewServer("127.0.0.1:0")
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())

	if code, _ := get(t, s.URL()+"/healthz", ""); code != http.StatusOK {
		t.Fatalf("/healthz = %d while starting, want 200 (alive)", code)
	}
	s.SetStage("restoring the event log")
	if code, body := get(t, s.URL()+"/readyz", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "restoring") {
		t.Fatalf("/readyz = %d %s, want 503 with the stage", code, body)
	}
	code, body := get(t, s.URL()+"/", "text/html,application/xhtml+xml")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "moltgate is starting") || !strings.Contains(body, "restoring the event log") {
		t.Fatalf("loading page = %d %s", code, body)
	}
	if code, body := get(t, s.URL()+"/api/anything", "application/json"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"unavailable"`) {
		t.Fatalf("API while starting = %d %s", code, body)
	}

	s.Ready()
	if code, _ := get(t, s.URL()+"/readyz", ""); code != http.StatusOK {
		t.Fatalf("/readyz = %d after Ready", code)
	}
	if code, body := get(t, s.URL()+"/api/anything", "text/html"); code != http.StatusNotFound || !strings.Contains(body, `"not_found"`) {
		t.Fatalf("an unknown route once ready = %d %s", code, body)
	}
}

func TestServer_StageIsEscaped(t *testing.T) {
	s := api.NewServer("127.0.0.1:0")
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	s.SetStage("<script>alert(1)</script>")
	if _, body := get(t, s.URL()+"/", "text/html"); strings.Contains(body, "<script>alert") {
		t.Fatal("stage text reached the page unescaped")
	}
}

func TestServer_AccessLogHasNoQuery(t *testing.T) {
	var buf strings.Builder
	s := api.NewServer("127.0.0.1:0")
	s.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	s.Ready()
	get(t, s.URL()+"/readyz?token=super-secret-token", "")
	s.Close(context.Background())
	out := buf.String()
	if !strings.Contains(out, "path=/readyz") || strings.Contains(out, "super-secret-token") {
		t.Fatalf("access log = %q", out)
	}
}

// The access log works out the client's address only when it writes a
// line, and then asks for the trusted proxies once (each call reads the
// config).
func TestServer_AccessLogAsksTrustOnce(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var calls atomic.Int32
		s := api.NewServer("127.0.0.1:0")
		s.Logger = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: level}))
		g := api.NewGateway(testToken)
		g.Trust = &api.Trust{Proxies: func() []*net.IPNet { calls.Add(1); return proxies("127.0.0.1/32", "10.0.0.0/8")() }}
		s.MountGateway(g, api.WebChat)
		if err := s.Open(); err != nil {
			t.Fatal(err)
		}
		s.Ready()
		req, _ := http.NewRequest("GET", s.URL()+"/readyz", nil)
		req.Header.Set("X-Forwarded-For", "198.51.100.1, 10.0.0.1")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		s.Close(context.Background())
		if want := map[slog.Level]int32{slog.LevelInfo: 0, slog.LevelDebug: 1}[level]; calls.Load() != want {
			t.Errorf("with %s lines: the trusted proxies were asked for %d times, want %d", level, calls.Load(), want)
		}
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// String reads what was written so far (w is a *bytes.Buffer).
func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.w)
}
