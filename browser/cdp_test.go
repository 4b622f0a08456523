package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
	"github.com/coder/websocket"
)

const testSecret = "s3cret-Ü/+&="

// cdpServer serves h at /cdp on loopback.
func cdpServer(tb testing.TB, m *Manager, cfg CDPConfig) *httptest.Server {
	tb.Helper()
	h, err := NewCDPHandler(m, cfg)
	if err != nil {
		tb.Fatalf("NewCDPHandler: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/cdp", h)
	mux.Handle("/cdp/", h)
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return srv
}

func wsBase(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") }

func withSecret(u string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "secret=" + url.QueryEscape(testSecret)
}

// httpJSON does a request and decodes a JSON answer.
func httpJSON(tb testing.TB, method, u string, header http.Header, v any) int {
	tb.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			tb.Fatalf("%s %s: %d, not JSON: %v: %s", method, u, resp.StatusCode, err, body)
		}
	}
	return resp.StatusCode
}

func bearer(secret string) http.Header { return http.Header{"Authorization": {"Bearer " + secret}} }

// cdpConn is a raw CDP client: what Puppeteer and Playwright speak.
type cdpConn struct {
	c  *websocket.Conn
	id int
}

func dialCDP(tb testing.TB, ctx context.Context, u string, header http.Header) *cdpConn {
	tb.Helper()
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		tb.Fatalf("dial %s: %v (HTTP %d)", u, err, status)
	}
	c.SetReadLimit(64 << 20)
	tb.Cleanup(func() { c.CloseNow() })
	return &cdpConn{c: c}
}

type cdpMessage struct {
	ID     int             `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

func (c *cdpConn) read(ctx context.Context) (cdpMessage, error) {
	_, data, err := c.c.Read(ctx)
	if err != nil {
		return cdpMessage{}, err
	}
	var m cdpMessage
	return m, json.Unmarshal(data, &m)
}

// call sends a command and returns its result, skipping events.
func (c *cdpConn) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	c.id++
	b, _ := json.Marshal(map[string]any{"id": c.id, "method": method, "params": params})
	if err := c.c.Write(ctx, websocket.MessageText, b); err != nil {
		return nil, err
	}
	for {
		m, err := c.read(ctx)
		if err != nil {
			return nil, err
		}
		if m.ID == c.id {
			if m.Error != nil {
				return nil, errors.New(m.Error.Message)
			}
			return m.Result, nil
		}
	}
}

func (c *cdpConn) evaluate(ctx context.Context, expr string) (any, error) {
	res, err := c.call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	if err != nil {
		return nil, err
	}
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
	}
	return r.Result.Value, json.Unmarshal(res, &r)
}

func TestCDP_Auth(t *testing.T) {
	type route struct {
		method, path string
		ws           bool
	}
	routes := []route{
		{method: "GET", path: "/cdp/json/version"},
		{method: "GET", path: "/cdp/json/version/"},
		{method: "GET", path: "/cdp/json"},
		{method: "GET", path: "/cdp/json/list"},
		{method: "PUT", path: "/cdp/json/new?url=about:blank"},
		{method: "PUT", path: "/cdp/json/new?about:blank"},
		{method: "GET", path: "/cdp/json/close/ABC"},
		{method: "GET", path: "/cdp/json/activate/ABC"},
		{method: "GET", path: "/cdp/unknown"},
		{path: "/cdp", ws: true},
		{path: "/cdp/devtools/browser/x", ws: true},
		{path: "/cdp/devtools/page/x", ws: true},
	}
	// do sends the request; a WebSocket route is dialled as a client would.
	do := func(t *testing.T, srv *httptest.Server, r route, query string, header http.Header) (int, map[string]string) {
		t.Helper()
		u := srv.URL + r.path
		if query != "" {
			u = withQuery(u, query)
		}
		if r.ws {
			ctx := testContext(t)
			c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(u, "http"), &websocket.DialOptions{HTTPHeader: header})
			if err == nil {
				c.CloseNow()
				t.Fatalf("WebSocket %s: connected", r.path)
			}
			if resp == nil {
				t.Fatalf("WebSocket %s: no HTTP answer: %v", r.path, err)
			}
			// coder/websocket keeps the first bytes of a refused handshake's body.
			return resp.StatusCode, nil
		}
		var body map[string]string
		status := httpJSON(t, r.method, u, header, &body)
		return status, body
	}

	t.Run("Refused", func(t *testing.T) {
		m := newManager(t, nil)
		srv := cdpServer(t, m, CDPConfig{Secret: testSecret})
		for _, r := range routes {
			for _, c := range []struct {
				name   string
				query  string
				header http.Header
			}{
				{name: "missing"},
				{name: "wrong query", query: "secret=nope"},
				{name: "wrong bearer", header: bearer("nope")},
				{name: "prefix of the secret", query: "secret=" + url.QueryEscape(testSecret[:4])},
				{name: "wrong scheme", header: http.Header{"Authorization": {"Basic " + testSecret}}},
			} {
				status, body := do(t, srv, r, c.query, c.header)
				if status != http.StatusUnauthorized {
					t.Errorf("%s %s, %s secret: status %d, want 401", r.method, r.path, c.name, status)
				}
				if !r.ws && (body["code"] != "unauthorized" || !strings.Contains(body["error"], "CDP secret")) {
					t.Errorf("%s %s, %s secret: body %v", r.method, r.path, c.name, body)
				}
			}
		}
		if st := m.Status(); st.Launches != 0 || st.Running {
			t.Errorf("refused requests reached the browser: %+v", st)
		}
	})

	t.Run("NoSecretConfigured", func(t *testing.T) {
		m := newManager(t, nil)
		srv := cdpServer(t, m, CDPConfig{})
		for _, r := range routes {
			// Even the right-looking secret gets nowhere.
			status, body := do(t, srv, r, "secret=anything", bearer("anything"))
			if status != http.StatusServiceUnavailable {
				t.Errorf("%s %s: status %d, want 503", r.method, r.path, status)
			}
			if !r.ws && !strings.Contains(body["error"], "the CDP endpoints are off: set CDP_SECRET") {
				t.Errorf("%s %s: body %v", r.method, r.path, body)
			}
		}
		if st := m.Status(); st.Launches != 0 {
			t.Errorf("requests reached the browser: %+v", st)
		}
	})
}

func withQuery(u, q string) string {
	if strings.Contains(u, "?") {
		return u + "&" + q
	}
	return u + "?" + q
}

func TestCDP_ChromedpRemoteAllocator(t *testing.T) {
	m := sharedManager(t)
	srv := cdpServer(t, m, CDPConfig{Secret: testSecret})
	site := pages(t, map[string]string{"/": `<title>through the proxy</title><p>hi</p>`})

	var version map[string]any
	if status := httpJSON(t, "GET", srv.URL+"/cdp/json/version", bearer(testSecret), &version); status != 200 {
		t.Fatalf("json/version: %d %v", status, version)
	}
	wsURL, _ := version["webSocketDebuggerUrl"].(string)
	wantPrefix := wsBase(srv) + "/cdp/devtools/browser/"
	if !strings.HasPrefix(wsURL, wantPrefix) || !strings.HasSuffix(wsURL, "?secret="+url.QueryEscape(testSecret)) {
		t.Fatalf("webSocketDebuggerUrl = %q, want %s…?secret=…", wsURL, wantPrefix)
	}
	if b, _ := version["Browser"].(string); !strings.Contains(b, "Chrome/") {
		t.Errorf("Browser = %q, want Chrome's version", b)
	}

	drive := func(t *testing.T, actx context.Context) {
		t.Helper()
		ctx, cancel := chromedp.NewContext(actx)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.Navigate(site.URL+"/")); err != nil {
			t.Fatalf("navigate through the proxy: %v", err)
		}
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.title + ":" + (6*7)`))
		if err != nil || got != "through the proxy:42" {
			t.Fatalf("evaluate through the proxy = %q, %v", got, err)
		}
	}
	t.Run("SecretInURL", func(t *testing.T) {
		actx, cancel := remote.NewAllocator(testContext(t), wsURL)
		defer cancel()
		drive(t, actx)
	})
	t.Run("AuthorizationHeader", func(t *testing.T) {
		bare := strings.SplitN(wsURL, "?", 2)[0]
		actx, cancel := remote.NewAllocator(testContext(t), bare, remote.WithDialHTTPHeader(bearer(testSecret)))
		defer cancel()
		drive(t, actx)
	})
}

func TestCDP_Targets(t *testing.T) {
	m := sharedManager(t)
	srv := cdpServer(t, m, CDPConfig{Secret: testSecret, PublicURL: "moltbot.example.workers.dev"})
	site := pages(t, map[string]string{"/new": `<title>new tab</title>`})
	auth := bearer(testSecret)
	public := "wss://moltbot.example.workers.dev/cdp/devtools/"

	var created map[string]any
	if status := httpJSON(t, "PUT", srv.URL+"/cdp/json/new?url="+url.QueryEscape(site.URL+"/new"), auth, &created); status != 200 {
		t.Fatalf("json/new: %d %v", status, created)
	}
	id, _ := created["id"].(string)
	if id == "" || created["type"] != "page" {
		t.Fatalf("json/new = %v, want a page target", created)
	}
	if got, want := created["webSocketDebuggerUrl"], public+"page/"+id+"?secret="+url.QueryEscape(testSecret); got != want {
		t.Errorf("webSocketDebuggerUrl = %v, want %v", got, want)
	}
	fe, _ := created["devtoolsFrontendUrl"].(string)
	feURL, err := url.Parse(fe)
	if err != nil || feURL.Query().Get("wss") != "moltbot.example.workers.dev/cdp/devtools/page/"+id+"?secret="+url.QueryEscape(testSecret) || feURL.Query().Has("ws") {
		t.Errorf("devtoolsFrontendUrl = %q, want its wss parameter on the public URL", fe)
	}

	// Chrome's own form, /json/new?<url>, with the secret in the query too.
	var created2 map[string]any
	if status := httpJSON(t, "PUT", withSecret(srv.URL+"/cdp/json/new?"+site.URL+"/new"), nil, &created2); status != 200 {
		t.Fatalf("json/new?<url>: %d %v", status, created2)
	}
	id2, _ := created2["id"].(string)

	listed := func() map[string]map[string]any {
		var list []map[string]any
		if status := httpJSON(t, "GET", srv.URL+"/cdp/json/list", auth, &list); status != 200 {
			t.Fatalf("json/list: %d", status)
		}
		byID := map[string]map[string]any{}
		for _, tg := range list {
			byID[tg["id"].(string)] = tg
			if ws, _ := tg["webSocketDebuggerUrl"].(string); ws != "" && !strings.HasPrefix(ws, public) {
				t.Errorf("json/list: webSocketDebuggerUrl %q does not point at the gateway", ws)
			}
		}
		return byID
	}
	eventually(t, 20*time.Second, "both new tabs load and are listed", func() bool {
		l := listed()
		return l[id]["url"] == site.URL+"/new" && l[id2]["url"] == site.URL+"/new"
	})
	var alias []map[string]any
	if status := httpJSON(t, "GET", srv.URL+"/cdp/json", auth, &alias); status != 200 || len(alias) == 0 {
		t.Errorf("/cdp/json: %d, %d targets", status, len(alias))
	}

	for _, tid := range []string{id, id2} {
		req, _ := http.NewRequest("GET", srv.URL+"/cdp/json/close/"+tid, nil)
		req.Header = auth
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "Target is closing") {
			t.Errorf("json/close: %d %q", resp.StatusCode, body)
		}
	}
	eventually(t, 20*time.Second, "closed tabs leave the list", func() bool {
		l := listed()
		return l[id] == nil && l[id2] == nil
	})

	var body map[string]string
	if status := httpJSON(t, "GET", srv.URL+"/cdp/json/close/no-such-target", auth, nil); status != 404 {
		t.Errorf("closing an unknown target: %d, want the browser's 404", status)
	}
	if status := httpJSON(t, "GET", srv.URL+"/cdp/json/close/..%2f..%2fetc", auth, &body); status != 400 && status != 404 {
		t.Errorf("a path in the id: %d %v", status, body)
	}
	if status := httpJSON(t, "DELETE", srv.URL+"/cdp/json/version", auth, &body); status != 405 {
		t.Errorf("DELETE json/version: %d %v", status, body)
	}
	if status := httpJSON(t, "GET", srv.URL+"/cdp/devtools/page/ABC", auth, &body); status != http.StatusUpgradeRequired {
		t.Errorf("plain GET of a WebSocket route: %d %v", status, body)
	}
	if status := httpJSON(t, "GET", srv.URL+"/cdp/json/new?url=%zz", auth, &body); status != 400 {
		t.Errorf("a bad new-tab URL: %d %v", status, body)
	}
}

func TestCDP_PublicURLFromRequest(t *testing.T) {
	m := sharedManager(t)
	trusted := func(r *http.Request) bool { return r.Header.Get("X-Test-Proxy") == "yes" }
	srv := cdpServer(t, m, CDPConfig{Secret: testSecret, TrustedRequest: trusted})
	forwarded := http.Header{
		"Authorization":     {"Bearer " + testSecret},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"gw.example.net"},
	}
	for _, c := range []struct {
		name    string
		trusted bool
		want    string
	}{
		{name: "untrusted proxy headers are ignored", want: wsBase(srv) + "/cdp/devtools/browser/"},
		{name: "a trusted proxy's headers are used", trusted: true, want: "wss://gw.example.net/cdp/devtools/browser/"},
	} {
		h := forwarded.Clone()
		if c.trusted {
			h.Set("X-Test-Proxy", "yes")
		}
		var v map[string]any
		httpJSON(t, "GET", srv.URL+"/cdp/json/version", h, &v)
		if ws, _ := v["webSocketDebuggerUrl"].(string); !strings.HasPrefix(ws, c.want) {
			t.Errorf("%s: webSocketDebuggerUrl = %q, want %s…", c.name, ws, c.want)
		}
	}
}

// sessionLog collects SessionEvents.
type sessionLog struct {
	mu     sync.Mutex
	events []SessionEvent
}

func (l *sessionLog) add(ev SessionEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

func (l *sessionLog) all() []SessionEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]SessionEvent(nil), l.events...)
}

func TestCDP_SessionsAndLimit(t *testing.T) {
	m := sharedManager(t)
	var log sessionLog
	srv := cdpServer(t, m, CDPConfig{
		Secret: testSecret, MaxSessions: 1, OnSession: log.add,
		ClientIP: func(*http.Request) string { return "203.0.113.7" },
	})
	ctx := testContext(t)

	var created map[string]any
	httpJSON(t, "PUT", srv.URL+"/cdp/json/new", bearer(testSecret), &created)
	id := created["id"].(string)
	defer httpJSON(t, "GET", srv.URL+"/cdp/json/close/"+id, bearer(testSecret), nil)

	c := dialCDP(t, ctx, wsBase(srv)+"/cdp/devtools/page/"+id, bearer(testSecret))
	if v, err := c.evaluate(ctx, "1+1"); err != nil || v != float64(2) {
		t.Fatalf("evaluate = %v, %v", v, err)
	}

	// A second session is over the limit.
	_, resp, err := websocket.Dial(ctx, wsBase(srv)+"/cdp/devtools/page/"+id, &websocket.DialOptions{HTTPHeader: bearer(testSecret)})
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second session: err %v, resp %v; want 429", err, resp)
	}

	if err := c.c.Close(4001, "done here"); err != nil {
		t.Fatalf("close: %v", err)
	}
	eventually(t, 10*time.Second, "the session is reported closed", func() bool { return len(log.all()) == 2 })
	evs := log.all()
	opened, closed := evs[0], evs[1]
	if opened.State != SessionOpened || opened.TargetType != "page" || opened.TargetID != id || opened.RemoteAddr != "203.0.113.7" || opened.ID == "" {
		t.Errorf("opened = %+v", opened)
	}
	if closed.State != SessionClosed || closed.ID != opened.ID || closed.CloseCode != 4001 || closed.ClosedBy != "client" ||
		closed.FramesIn != 1 || closed.FramesOut < 1 || closed.BytesIn == 0 || closed.BytesOut == 0 || closed.Duration <= 0 {
		t.Errorf("closed = %+v", closed)
	}

	// The slot is free again.
	c2 := dialCDP(t, ctx, withSecret(wsBase(srv)+"/cdp/devtools/page/"+id), nil)
	if _, err := c2.evaluate(ctx, "0"); err != nil {
		t.Fatalf("a session after the first closed: %v", err)
	}
}

// TestCDP_NewTabSession is Moltworker's /cdp: its cloudflare-browser
// scripts wait for Target.targetCreated, then send page commands.
func TestCDP_NewTabSession(t *testing.T) {
	m := sharedManager(t)
	var log sessionLog
	srv := cdpServer(t, m, CDPConfig{Secret: testSecret, OnSession: log.add})
	site := pages(t, map[string]string{"/": `<title>moltworker script</title>`})
	ctx := testContext(t)

	c := dialCDP(t, ctx, withSecret(wsBase(srv)+"/cdp"), bearer(testSecret))
	first, err := c.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		TargetInfo struct {
			TargetID string `json:"targetId"`
			Type     string `json:"type"`
		} `json:"targetInfo"`
	}
	if first.Method != "Target.targetCreated" || json.Unmarshal(first.Params, &created) != nil || created.TargetInfo.Type != "page" {
		t.Fatalf("first message = %+v, want Target.targetCreated for a page", first)
	}
	id := created.TargetInfo.TargetID
	if _, err := c.call(ctx, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 640, "height": 400, "deviceScaleFactor": 1, "mobile": false}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.call(ctx, "Page.navigate", map[string]any{"url": site.URL + "/"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the page loads", func() bool {
		v, err := c.evaluate(ctx, "document.title")
		return err == nil && v == "moltworker script"
	})
	shot, err := c.call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"})
	if err != nil || !bytes.Contains(shot, []byte(`"data":"iVBOR`)) {
		t.Fatalf("captureScreenshot: %v %.60s", err, shot)
	}
	c.c.Close(websocket.StatusNormalClosure, "")

	eventually(t, 20*time.Second, "the session's tab is closed", func() bool {
		var list []map[string]any
		httpJSON(t, "GET", srv.URL+"/cdp/json/list", bearer(testSecret), &list)
		for _, tg := range list {
			if tg["id"] == id {
				return false
			}
		}
		return true
	})
	evs := log.all()
	if len(evs) != 2 || evs[0].TargetID != id || evs[1].CloseCode != int(websocket.StatusNormalClosure) || evs[1].FramesOut < 4 {
		t.Errorf("session events = %+v", evs)
	}
}

// fakeDevtools is a DevTools WebSocket server that echoes, closes on
// request, and records how the proxy closed it.
type fakeDevtools struct {
	mu     sync.Mutex
	paths  []string
	closed chan websocket.CloseError
}

func (f *fakeDevtools) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/json/version" {
		fmt.Fprintf(w, `{"Browser":"Fake/1.0","webSocketDebuggerUrl":"ws://localhost:1/devtools/browser/fake"}`)
		return
	}
	f.mu.Lock()
	f.paths = append(f.paths, r.URL.Path)
	f.mu.Unlock()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	c.SetReadLimit(-1)
	ctx := context.Background()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			errors.As(err, &ce)
			f.closed <- ce
			return
		}
		if s, ok := strings.CutPrefix(string(data), "close:"); ok && typ == websocket.MessageText {
			if s == "drop" {
				c.CloseNow()
			} else {
				c.Close(4003, s)
			}
			return
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

func TestCDP_Bridge(t *testing.T) {
	fake := &fakeDevtools{closed: make(chan websocket.CloseError, 1)}
	upstream := httptest.NewServer(fake)
	defer upstream.Close()
	var log sessionLog
	m := newManager(t, func(m *Manager) {
		m.RemoteURL = "ws" + strings.TrimPrefix(upstream.URL, "http") + "/devtools/browser/fake"
	})
	srv := cdpServer(t, m, CDPConfig{Secret: testSecret, OnSession: log.add})
	ctx := testContext(t)

	t.Run("FramesUnchanged", func(t *testing.T) {
		c := dialCDP(t, ctx, withSecret(wsBase(srv)+"/cdp/devtools/page/P1"), nil)
		big := bytes.Repeat([]byte{0, 1, 2, 0xff}, 1<<18) // 1 MiB: over coder/websocket's default read limit
		for _, msg := range []struct {
			typ  websocket.MessageType
			data []byte
		}{{websocket.MessageText, []byte(`{"id":1,"method":"Runtime.evaluate"}`)}, {websocket.MessageBinary, big}, {websocket.MessageText, []byte("ü")}} {
			if err := c.c.Write(ctx, msg.typ, msg.data); err != nil {
				t.Fatal(err)
			}
			typ, data, err := c.c.Read(ctx)
			if err != nil || typ != msg.typ || !bytes.Equal(data, msg.data) {
				t.Fatalf("echo of a %v message of %d bytes: got %v, %d bytes, %v", msg.typ, len(msg.data), typ, len(data), err)
			}
		}
		c.c.Close(4001, "client bye")
		if got := <-fake.closed; got.Code != 4001 || got.Reason != "client bye" {
			t.Errorf("upstream saw close %v, want 4001 client bye", got)
		}
		fake.mu.Lock()
		defer fake.mu.Unlock()
		if last := fake.paths[len(fake.paths)-1]; last != "/devtools/page/P1" {
			t.Errorf("upstream path = %q", last)
		}
	})
	t.Run("BrowserCloses", func(t *testing.T) {
		c := dialCDP(t, ctx, withSecret(wsBase(srv)+"/cdp/devtools/browser/any-id"), nil)
		c.c.Write(ctx, websocket.MessageText, []byte("close:upstream bye"))
		_, _, err := c.c.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4003 || ce.Reason != "upstream bye" {
			t.Errorf("client saw %v, want close 4003 upstream bye", err)
		}
		fake.mu.Lock()
		defer fake.mu.Unlock()
		if last := fake.paths[len(fake.paths)-1]; last != "/devtools/browser/fake" {
			t.Errorf("a browser session went to %q, want the current browser", last)
		}
	})
	t.Run("BrowserDrops", func(t *testing.T) {
		c := dialCDP(t, ctx, withSecret(wsBase(srv)+"/cdp/devtools/page/P2"), nil)
		c.c.Write(ctx, websocket.MessageText, []byte("close:drop"))
		_, _, err := c.c.Read(ctx)
		if websocket.CloseStatus(err) != websocket.StatusInternalError {
			t.Errorf("client saw %v, want close 1011", err)
		}
	})
	eventually(t, 10*time.Second, "all sessions reported", func() bool { return len(log.all()) == 6 })
	var closedBy []string
	for _, ev := range log.all() {
		if ev.State == SessionClosed {
			closedBy = append(closedBy, fmt.Sprint(ev.ClosedBy, ev.CloseCode))
		}
	}
	slices.Sort(closedBy) // each session reports as it ends, in no set order
	if got := strings.Join(closedBy, " "); got != "browser-1 browser4003 client4001" {
		t.Errorf("closes reported: %s", got)
	}
}

func TestNewTabURL(t *testing.T) {
	for q, want := range map[string]string{
		"":         "about:blank",
		"secret=x": "about:blank",
		"url=https%3A%2F%2Fa.example%2F%3Fq%3D1%26r%3D2": "https://a.example/?q=1&r=2",
		"url=https://a.example/?q=1&r=2":                 "https://a.example/?q=1&r=2",
		"https://a.example/?q=a+b&r=2":                   "https://a.example/?q=a+b&r=2",
		"https://a.example/&secret=x":                    "https://a.example/",
		"secret=x&https://a.example/":                    "https://a.example/",
	} {
		got, err := newTabURL(q)
		if err != nil || got != want {
			t.Errorf("newTabURL(%q) = %q, %v; want %q", q, got, err, want)
		}
	}
	if _, err := newTabURL("url=%zz"); err == nil {
		t.Error("a bad escape was accepted")
	}
}
