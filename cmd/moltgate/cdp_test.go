package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
)

// A script written for Moltworker's /cdp endpoints works through the
// gateway: chromedp follows /cdp/json/version to the browser, navigates
// and evaluates; the session is recorded as events; no secret, no entry.
func TestServe_CDPThroughTheGateway(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`<html><head><title>through the proxy</title></head><body>hello</body></html>`))
	}))
	defer page.Close()
	const secret = "cdp-secret-for-the-test-0123456789"
	_, env := testEnv(t, map[string]string{"CDP_SECRET": secret})
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())

	if res, err := http.Get(g.server.URL() + "/cdp/json/version"); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no secret: %v %v", res.StatusCode, err)
	}
	res, err := http.Get(g.server.URL() + "/cdp/json/version?secret=" + secret)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("json/version = %v %v", res, err)
	}
	var version struct {
		WS string `json:"webSocketDebuggerUrl"`
	}
	json.NewDecoder(res.Body).Decode(&version)
	res.Body.Close()
	if !strings.HasPrefix(version.WS, strings.Replace(g.server.URL(), "http://", "ws://", 1)+"/cdp/devtools/browser/") {
		t.Fatalf("webSocketDebuggerUrl %q does not point at the gateway", version.WS)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, acancel := remote.NewAllocator(ctx, version.WS)
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
	opened, _ := g.log.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventBrowserSessionOpened})
	var d moltgate.BrowserSessionData
	if len(opened) == 0 || opened[0].Decode(&d) != nil || d.RemoteIP != "127.0.0.1" || d.SessionID == "" {
		t.Fatalf("opened = %+v", opened)
	}
}
