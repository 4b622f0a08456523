package browser

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// Defaults of CDPConfig.
const (
	DefaultCDPPrefix       = "/cdp"
	DefaultMaxSessions     = 4
	DefaultMaxMessageBytes = 128 << 20 // a full-page screenshot is tens of MB of base64
)

// CDPConfig configures the CDP endpoints.
type CDPConfig struct {
	// Secret is CDP_SECRET. Empty turns every endpoint off (503), so the
	// browser is never reachable without one.
	Secret string
	// Prefix is the path the handler is mounted under. Empty means "/cdp".
	Prefix string
	// PublicURL is the gateway's public base URL (WORKER_URL), used in the
	// WebSocket URLs the JSON endpoints hand out. Empty derives it from each
	// request. A value without a scheme is taken as https.
	PublicURL string
	// TrustedRequest reports whether a request came through a proxy whose
	// X-Forwarded-Proto and X-Forwarded-Host headers are believed. Nil
	// believes none.
	TrustedRequest func(*http.Request) bool
	// ClientIP returns the client's address for SessionEvent. Nil uses the
	// peer address.
	ClientIP func(*http.Request) string
	// OnSession is told when a CDP WebSocket session opens and closes, for
	// the event log; it runs on the session's goroutine and must not block.
	OnSession func(SessionEvent)
	// MaxSessions caps concurrent WebSocket sessions. Zero means
	// DefaultMaxSessions.
	MaxSessions int
	// MaxMessageBytes caps one WebSocket message in either direction. Zero
	// means DefaultMaxMessageBytes.
	MaxMessageBytes int64
}

// SessionState says whether a SessionEvent opens or closes a session.
type SessionState string

// States of a CDP session.
const (
	SessionOpened SessionState = "opened"
	SessionClosed SessionState = "closed"
)

// SessionEvent reports one CDP WebSocket session (not each frame).
type SessionEvent struct {
	State      SessionState
	ID         string // moltgate's id for the session, the same on open and close
	TargetType string // "browser" or "page"
	TargetID   string
	RemoteAddr string
	Started    time.Time

	// Set when the session closed.
	Duration  time.Duration
	FramesIn  int64  // messages from the client to the browser
	BytesIn   int64  // their payload bytes
	FramesOut int64  // messages from the browser to the client
	BytesOut  int64  // their payload bytes
	CloseCode int    // the WebSocket close code passed on, -1 when the connection dropped
	ClosedBy  string // "client", "browser" or "gateway"
}

// CDPHandler serves the Chrome DevTools Protocol endpoints of the shared
// browser, as Chrome serves them on its debugging port, behind CDP_SECRET:
//
//	GET  {prefix}/json/version         browser version and WebSocket URL
//	GET  {prefix}/json, /json/list     targets
//	PUT  {prefix}/json/new?url=…       open a tab (also GET, and Chrome's /json/new?<url>)
//	GET  {prefix}/json/close/{id}      close a tab
//	GET  {prefix}/json/activate/{id}   bring a tab to front
//	WS   {prefix}/devtools/browser/{id}, {prefix}/devtools/page/{id}
//	WS   {prefix}                      a fresh tab, as Moltworker's /cdp gave
//
// The URLs in its JSON answers point back at the gateway with the secret as
// ?secret=, so Puppeteer, Playwright and chromedp follow them unchanged.
type CDPHandler struct {
	m        *Manager
	cfg      CDPConfig
	public   *url.URL
	mux      *http.ServeMux
	sessions atomic.Int64
}

// NewCDPHandler returns the handler; mount it at cfg.Prefix.
func NewCDPHandler(m *Manager, cfg CDPConfig) (*CDPHandler, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultCDPPrefix
	}
	cfg.Prefix = "/" + strings.Trim(cfg.Prefix, "/")
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	h := &CDPHandler{m: m, cfg: cfg, mux: http.NewServeMux()}
	if cfg.PublicURL != "" {
		s := cfg.PublicURL
		if !strings.Contains(s, "://") {
			s = "https://" + s
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("cannot use the public URL %q (WORKER_URL): want https://host[:port]", cfg.PublicURL)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		h.public = u
	}
	p := cfg.Prefix
	h.mux.HandleFunc(p, h.serveNewTabSession)
	h.mux.HandleFunc(p+"/{$}", h.serveNewTabSession)
	for _, s := range []string{"/json/version", "/json/version/{$}"} {
		h.mux.HandleFunc(p+s, h.serveVersion)
	}
	for _, s := range []string{"/json", "/json/{$}", "/json/list", "/json/list/{$}"} {
		h.mux.HandleFunc(p+s, h.serveList)
	}
	h.mux.HandleFunc(p+"/json/new", h.serveNew)
	h.mux.HandleFunc(p+"/json/new/{$}", h.serveNew)
	h.mux.HandleFunc(p+"/json/close/{id}", h.serveTargetCommand)
	h.mux.HandleFunc(p+"/json/activate/{id}", h.serveTargetCommand)
	h.mux.HandleFunc(p+"/devtools/{kind}/{id}", h.serveDevtools)
	h.mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, moltgate.Errorf(moltgate.ENOTFOUND, "no CDP endpoint at %s: see %s/json/version", r.URL.Path, p))
	})
	return h, nil
}

// ServeHTTP checks the secret before anything else, WebSocket upgrades
// included, so no request without it reaches (or launches) the browser.
func (h *CDPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.authorize(r); err != nil {
		if moltgate.ErrorCode(err) == moltgate.EUNAUTHORIZED {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cdp"`)
		}
		writeError(w, err)
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *CDPHandler) authorize(r *http.Request) error {
	if h.cfg.Secret == "" {
		return moltgate.Errorf(moltgate.EUNAVAILABLE, "the CDP endpoints are off: set CDP_SECRET")
	}
	got, ok := bearerToken(r)
	if !ok {
		got = r.URL.Query().Get("secret")
	}
	if got == "" {
		return moltgate.Errorf(moltgate.EUNAUTHORIZED, "missing CDP secret: send Authorization: Bearer <CDP_SECRET> or ?secret=<CDP_SECRET>")
	}
	// Comparing hashes keeps the time independent of the secret's length too.
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(h.cfg.Secret))
	if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		return moltgate.Errorf(moltgate.EUNAUTHORIZED, "wrong CDP secret")
	}
	return nil
}

func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeErrorStatus(w, http.StatusMethodNotAllowed, moltgate.EINVALID, fmt.Sprintf("%s does not accept %s: use %s", r.URL.Path, r.Method, strings.Join(methods, " or ")))
	return false
}

func (h *CDPHandler) serveVersion(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	l, err := h.m.acquire(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	defer l.release()
	var v map[string]any
	if err := getJSON(r.Context(), l.inst.httpURL("/json/version", ""), &v); err != nil {
		writeError(w, browserError(err))
		return
	}
	v["webSocketDebuggerUrl"] = h.publicWS(r, browserPath(l.inst.wsURL))
	writeJSON(w, http.StatusOK, v)
}

func (h *CDPHandler) serveList(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	l, err := h.m.acquire(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	defer l.release()
	var targets []map[string]any
	if err := getJSON(r.Context(), l.inst.httpURL("/json/list", ""), &targets); err != nil {
		writeError(w, browserError(err))
		return
	}
	for _, t := range targets {
		h.rewriteTarget(r, t)
	}
	if targets == nil {
		targets = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, targets)
}

// serveNew opens a tab. Chrome only takes PUT since version 111; GET is
// accepted here for the clients written before, and the URL may come as
// ?url=… or, as Chrome takes it, as the whole query.
func (h *CDPHandler) serveNew(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPut, http.MethodGet, http.MethodPost) {
		return
	}
	target, err := newTabURL(r.URL.RawQuery)
	if err != nil {
		writeError(w, err)
		return
	}
	l, err := h.m.acquire(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	defer l.release()
	t, err := newTarget(r.Context(), l.inst, target)
	if err != nil {
		writeError(w, err)
		return
	}
	h.rewriteTarget(r, t)
	writeJSON(w, http.StatusOK, t)
}

// newTabURL reads the URL of /json/new: ?url=…, or Chrome's /json/new?<url>,
// where the rest of the query is the URL, escaped or not. The secret, when
// sent as ?secret=, is not part of it.
func newTabURL(rawQuery string) (string, error) {
	var parts []string
	for _, p := range strings.Split(rawQuery, "&") {
		if p != "" && !strings.HasPrefix(p, "secret=") {
			parts = append(parts, p)
		}
	}
	q := strings.Join(parts, "&")
	if q == "" {
		return "about:blank", nil
	}
	q = strings.TrimPrefix(q, "url=")
	// Chrome unescapes the URL without turning + into a space.
	target, err := url.PathUnescape(q)
	if err != nil {
		return "", moltgate.Errorf(moltgate.EINVALID, "cannot read the URL of the new tab: %v", err)
	}
	if _, err := url.Parse(target); err != nil {
		return "", moltgate.Errorf(moltgate.EINVALID, "cannot read the URL of the new tab: %v", err)
	}
	return target, nil
}

// newTarget opens a tab through the browser's /json/new.
func newTarget(ctx context.Context, inst *instance, target string) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, inst.httpURL("/json/new", url.QueryEscape(target)), nil)
	if err != nil {
		return nil, err
	}
	resp, err := devtoolsClient.Do(req)
	if err != nil {
		return nil, browserError(errors.New(redactError(err)))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDevtoolsBody))
	if err != nil {
		return nil, browserError(err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, browserError(fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body))))
	}
	var t map[string]any
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, browserError(err)
	}
	return t, nil
}

// serveTargetCommand passes /json/close/{id} and /json/activate/{id} on,
// with the browser's own answer.
func (h *CDPHandler) serveTargetCommand(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodPut) {
		return
	}
	id := r.PathValue("id")
	if !pathID(id) {
		writeError(w, moltgate.Errorf(moltgate.EINVALID, "bad target id %q", id))
		return
	}
	cmd := "close"
	if strings.Contains(r.URL.Path, "/json/activate/") {
		cmd = "activate"
	}
	l, err := h.m.acquire(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	defer l.release()
	status, body, err := targetCommand(r.Context(), l.inst, cmd, id)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func targetCommand(ctx context.Context, inst *instance, cmd, id string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, inst.httpURL("/json/"+cmd+"/"+id, ""), nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := devtoolsClient.Do(req)
	if err != nil {
		return 0, nil, browserError(errors.New(redactError(err)))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDevtoolsBody))
	if err != nil {
		return 0, nil, browserError(err)
	}
	return resp.StatusCode, body, nil
}

// browserError is an error of the browser's DevTools server, as a client
// sees it.
func browserError(err error) error {
	var e *moltgate.Error
	if errors.As(err, &e) || errors.Is(err, context.Canceled) {
		return err
	}
	return moltgate.Errorf(moltgate.EUNAVAILABLE, "the browser did not answer: %v", err)
}

// rewriteTarget points a target's URLs at the gateway.
func (h *CDPHandler) rewriteTarget(r *http.Request, t map[string]any) {
	ws, _ := t["webSocketDebuggerUrl"].(string)
	u, err := url.Parse(ws)
	if ws == "" || err != nil {
		return
	}
	public := h.publicWS(r, u.Path)
	t["webSocketDebuggerUrl"] = public
	if fe, _ := t["devtoolsFrontendUrl"].(string); fe != "" {
		t["devtoolsFrontendUrl"] = h.frontendURL(r, fe, public)
	}
}

// frontendURL points a DevTools frontend link at the gateway's WebSocket:
// the frontend connects to "ws://" or "wss://" followed by its ws or wss
// parameter.
func (h *CDPHandler) frontendURL(r *http.Request, fe, publicWS string) string {
	u, err := url.Parse(fe)
	if err != nil {
		return ""
	}
	if !u.IsAbs() {
		scheme, host, base := h.publicBase(r)
		u.Scheme, u.Host, u.Path = scheme, host, base+h.cfg.Prefix+u.Path
	}
	q := u.Query()
	q.Del("ws")
	q.Del("wss")
	scheme, rest, _ := strings.Cut(publicWS, "://")
	q.Set(scheme, rest)
	u.RawQuery = q.Encode()
	return u.String()
}

// publicBase is the scheme, host and base path clients reach the gateway at.
func (h *CDPHandler) publicBase(r *http.Request) (scheme, host, base string) {
	if h.public != nil {
		return h.public.Scheme, h.public.Host, h.public.Path
	}
	scheme, host = "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if h.cfg.TrustedRequest != nil && h.cfg.TrustedRequest(r) {
		if p, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ","); strings.TrimSpace(p) == "https" || strings.TrimSpace(p) == "http" {
			scheme = strings.TrimSpace(p)
		}
		if fh, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Host"), ","); strings.TrimSpace(fh) != "" {
			host = strings.TrimSpace(fh)
		}
	}
	return scheme, host, ""
}

// publicWS is the gateway's WebSocket URL for a DevTools path, with the
// secret a stock client needs to follow it.
func (h *CDPHandler) publicWS(r *http.Request, devtoolsPath string) string {
	scheme, host, base := h.publicBase(r)
	ws := "ws"
	if scheme == "https" {
		ws = "wss"
	}
	return ws + "://" + host + base + h.cfg.Prefix + devtoolsPath + "?secret=" + url.QueryEscape(h.cfg.Secret)
}

// browserPath is the path of a browser WebSocket URL.
func browserPath(wsURL string) string {
	u, err := url.Parse(wsURL)
	if err != nil {
		return ""
	}
	return u.Path
}

func (h *CDPHandler) clientIP(r *http.Request) string {
	if h.cfg.ClientIP != nil {
		return h.cfg.ClientIP(r)
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "   ") // as Chrome indents
	_ = enc.Encode(v)
}

// writeError answers with {"error": message, "code": code}, the status
// following the code.
func writeError(w http.ResponseWriter, err error) {
	status := moltgate.HTTPStatus(moltgate.ErrorCode(err))
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusGatewayTimeout
		err = moltgate.Errorf(moltgate.ETIMEOUT, "the browser did not answer in time")
	}
	writeErrorStatus(w, status, moltgate.ErrorCode(err), moltgate.ErrorMessage(err))
}

func writeErrorStatus(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]string{"error": message, "code": code})
}
