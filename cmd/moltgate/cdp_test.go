package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/browser"
	"github.com/moltgate/moltgate/eventlog"
)

const cdpSecret = "cdp-secret-for-the-test-0123456789"

// A script written for Moltworker's /cdp endpoints works through the
// gateway: chromedp follows /cdp/json/version to the browser, navigates
// and evaluates; the session is recorded as events; no secret, no entry.
func TestServe_CDPThroughTheGateway(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`<html><head><title>through the proxy</title></head><body>hello</body></html>`))
	}))
	defer page.Close()
	_, env := testEnv(t, map[string]string{"CDP_SECRET": cdpSecret})
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())

	for _, c := range []struct {
		name, query, auth string
		want              int
	}{
		{"no secret", "", "", http.StatusUnauthorized},
		{"a wrong secret", "?secret=wrong", "", http.StatusUnauthorized},
		{"?secret=", "?secret=" + cdpSecret, "", http.StatusOK},
		{"Authorization: Bearer", "", "Bearer " + cdpSecret, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, g.server.URL()+"/cdp/json/version"+c.query, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("%s: json/version = %d, want %d", c.name, res.StatusCode, c.want)
		}
	}
	ws := cdpBrowserURL(t, g)
	if !strings.HasPrefix(ws, strings.Replace(g.server.URL(), "http://", "ws://", 1)+"/cdp/devtools/browser/") {
		t.Fatalf("webSocketDebuggerUrl %q does not point at the gateway", ws)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, acancel := remote.NewAllocator(ctx, ws)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx, chromedp.Navigate(page.URL)); err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.title`))
	if err != nil {
		t.Fatal(err)
	}
	bcancel()
	if title != "through the proxy" {
		t.Fatalf("title = %q", title)
	}
	waitFor(t, "the session's events", func() bool {
		closed, _ := g.log.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventBrowserSessionClosed})
		return len(closed) > 0
	})
	opened, closed := cdpSessionEvents(t, g.log)
	if opened.RemoteIP != "127.0.0.1" || opened.SessionID == "" || opened.TargetType != "browser" || opened.TargetID == "" {
		t.Fatalf("opened = %+v", opened)
	}
	if closed.SessionID != opened.SessionID || closed.TargetID != opened.TargetID || closed.FramesIn == 0 || closed.BytesIn == 0 ||
		closed.FramesOut == 0 || closed.BytesOut == 0 || closed.DurationMs <= 0 || closed.ClosedBy != "client" {
		t.Fatalf("closed = %+v, want the traffic of the session opened as %+v, closed by the client", closed, opened)
	}

	// Guessing the secret spends the client's failure budget (shared with
	// the gateway token's): after it, even the secret is refused.
	status := func(secret string) int {
		res, err := http.Get(g.server.URL() + "/cdp/json/version?secret=" + secret)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for i := 0; status("guess") == http.StatusUnauthorized; i++ {
		if i == 10 {
			t.Fatal("more than ten wrong secrets in a row answered 401: nothing limits guessing")
		}
	}
	if code := status(cdpSecret); code != http.StatusTooManyRequests {
		t.Fatalf("the secret after the failures = %d, want 429", code)
	}
}

// A session still open when the gateway stops is recorded, open then
// closed, before the log closes.
func TestServe_CDPSessionOpenAtShutdown(t *testing.T) {
	vars, env := testEnv(t, map[string]string{"CDP_SECRET": cdpSecret})
	g := mustOpenGateway(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, acancel := remote.NewAllocator(ctx, cdpBrowserURL(t, g))
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	if err := g.close(context.Background()); err != nil {
		t.Fatal(err)
	}
	opened, closed := cdpSessionEvents(t, readLog(t, vars["MOLTGATE_DATA_DIR"]))
	if closed.SessionID != opened.SessionID || closed.ClosedBy == "" {
		t.Fatalf("opened %+v, closed %+v: want the session's close, recorded at shutdown", opened, closed)
	}
}

// cdpBrowserURL asks the gateway's /cdp/json/version for the browser's
// WebSocket URL, as CDP clients do.
func cdpBrowserURL(t *testing.T, g *gateway) string {
	t.Helper()
	res, err := http.Get(g.server.URL() + "/cdp/json/version?secret=" + cdpSecret)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var version struct {
		WS string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(res.Body).Decode(&version); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("json/version = %d, %v", res.StatusCode, err)
	}
	return version.WS
}

// cdpSessionEvents returns the one CDP session's events, checking that its
// open is recorded before its close.
func cdpSessionEvents(t *testing.T, l *eventlog.Log) (opened, closed moltgate.BrowserSessionData) {
	t.Helper()
	events, err := l.Query(context.Background(), eventlog.Filter{Stream: moltgate.BrowserStream})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || events[0].Type != moltgate.EventBrowserSessionOpened || events[1].Type != moltgate.EventBrowserSessionClosed {
		t.Fatalf("browser events = %+v, want one session opened then closed", events)
	}
	if err := events[0].Decode(&opened); err != nil {
		t.Fatal(err)
	}
	if err := events[1].Decode(&closed); err != nil {
		t.Fatal(err)
	}
	return opened, closed
}

// The recorder keeps the sessions' order, waits at close for the sessions
// still open to report their close, and drops (without panicking) what
// comes after.
func TestSessionRecorder(t *testing.T) {
	var mu sync.Mutex
	var recorded []string
	r := newSessionRecorder(discardLogger(), func(ev browser.SessionEvent) {
		time.Sleep(time.Millisecond) // a log slower than the sessions
		mu.Lock()
		defer mu.Unlock()
		recorded = append(recorded, ev.ID+" "+string(ev.State))
	})
	var want []string
	for _, id := range []string{"a", "b", "c"} {
		r.add(browser.SessionEvent{ID: id, State: browser.SessionOpened})
		want = append(want, id+" opened")
	}
	for _, id := range []string{"b", "a"} {
		r.add(browser.SessionEvent{ID: id, State: browser.SessionClosed})
		want = append(want, id+" closed")
	}
	go func() {
		time.Sleep(50 * time.Millisecond) // c ends only once the browser closes
		r.add(browser.SessionEvent{ID: "c", State: browser.SessionClosed})
	}()
	want = append(want, "c closed")
	for range 2 { // a gateway may be closed twice
		if err := r.close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	r.add(browser.SessionEvent{ID: "late", State: browser.SessionOpened})
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(recorded, ", ") != strings.Join(want, ", ") {
		t.Fatalf("recorded %q, want %q", recorded, want)
	}
}

// A session that never reports its close holds the shutdown only until
// its deadline.
func TestSessionRecorder_CloseIsBounded(t *testing.T) {
	r := newSessionRecorder(discardLogger(), func(browser.SessionEvent) {})
	r.add(browser.SessionEvent{ID: "stuck", State: browser.SessionOpened})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.close(ctx); err == nil || !strings.Contains(err.Error(), "CDP sessions") {
		t.Fatalf("close = %v, want the deadline's error", err)
	}
}
