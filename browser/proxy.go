package browser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	moltgate "github.com/moltgate/moltgate"
)

// serveDevtools proxies a WebSocket on {prefix}/devtools/{browser|page}/{id}.
// A browser id is not checked: the browser behind the gateway may have been
// relaunched since the client read /json/version, and there is only one.
func (h *CDPHandler) serveDevtools(w http.ResponseWriter, r *http.Request) {
	kind, id := r.PathValue("kind"), r.PathValue("id")
	if kind != "browser" && kind != "page" {
		writeError(w, moltgate.Errorf(moltgate.ENOTFOUND, "no CDP endpoint at %s: DevTools WebSockets are /devtools/browser/{id} and /devtools/page/{id}", r.URL.Path))
		return
	}
	if !pathID(id) {
		writeError(w, moltgate.Errorf(moltgate.EINVALID, "bad target id %q", id))
		return
	}
	if !isWebSocket(r) {
		writeErrorStatus(w, http.StatusUpgradeRequired, moltgate.EINVALID, "connect to this URL with a WebSocket (Chrome DevTools Protocol)")
		return
	}
	h.proxy(w, r, kind, id)
}

// serveNewTabSession is Moltworker's /cdp: a WebSocket straight to a fresh
// tab, announced with Target.targetCreated as Moltworker did, so its
// cloudflare-browser scripts run unchanged. The tab closes with the session.
func (h *CDPHandler) serveNewTabSession(w http.ResponseWriter, r *http.Request) {
	if !isWebSocket(r) {
		writeErrorStatus(w, http.StatusUpgradeRequired, moltgate.EINVALID,
			fmt.Sprintf("connect a WebSocket here for a fresh tab, or read %s/json/version for the browser's WebSocket URL", h.cfg.Prefix))
		return
	}
	h.proxy(w, r, "page", "")
}

// isWebSocket recognises an upgrade; Cloudflare's edge may drop the Upgrade
// header but keeps Sec-WebSocket-Key.
func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || r.Header.Get("Sec-WebSocket-Key") != ""
}

// proxy connects the client to the browser's DevTools WebSocket for kind and
// id (a new tab when id is empty) and passes messages both ways unchanged
// until either side closes.
func (h *CDPHandler) proxy(w http.ResponseWriter, r *http.Request, kind, id string) {
	if n := h.sessions.Add(1); n > int64(h.cfg.MaxSessions) {
		h.sessions.Add(-1)
		writeErrorStatus(w, http.StatusTooManyRequests, moltgate.EUNAVAILABLE,
			fmt.Sprintf("too many CDP sessions: %d are open, the limit; close one and retry", h.cfg.MaxSessions))
		return
	}
	defer h.sessions.Add(-1)

	l, err := h.m.acquire(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	defer l.release()

	newTab := id == ""
	if newTab {
		t, err := newTarget(r.Context(), l.inst, "about:blank")
		if err != nil {
			writeError(w, err)
			return
		}
		id, _ = t["id"].(string)
		if !pathID(id) {
			writeError(w, moltgate.Errorf(moltgate.EUNAVAILABLE, "the browser opened a tab without an id"))
			return
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _, _ = targetCommand(ctx, l.inst, "close", id)
		}()
	}
	upstreamURL := l.inst.wsURL
	if kind == "page" {
		upstreamURL = l.inst.devtoolsURL("/devtools/page/" + id)
	}

	dialCtx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	up, resp, err := websocket.Dial(dialCtx, upstreamURL, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusNotFound {
			writeError(w, moltgate.Errorf(moltgate.ENOTFOUND, "the browser has no target %s", id))
			return
		}
		h.m.Logger.Warn("cannot connect to the browser's DevTools WebSocket", "kind", kind, "err", redactError(err))
		writeError(w, moltgate.Errorf(moltgate.EUNAVAILABLE, "cannot connect to the browser"))
		return
	}
	// The secret, not the Origin, authenticates: a page from another origin
	// cannot know it, so there is nothing for an Origin check to protect.
	client, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		up.CloseNow()
		return
	}
	client.SetReadLimit(h.cfg.MaxMessageBytes)
	up.SetReadLimit(h.cfg.MaxMessageBytes)

	ev := SessionEvent{
		State: SessionOpened, ID: moltgate.NewID(), TargetType: kind, TargetID: id,
		RemoteAddr: h.clientIP(r), Started: time.Now(), CloseCode: -1,
	}
	if kind == "browser" {
		ev.TargetID = strings.TrimPrefix(browserPath(l.inst.wsURL), "/devtools/browser/")
	}
	h.report(ev)
	if newTab {
		announce := fmt.Sprintf(`{"method":"Target.targetCreated","params":{"targetInfo":{"targetId":%q,"type":"page","title":"","url":"about:blank","attached":true,"canAccessOpener":false}}}`, id)
		if err := client.Write(r.Context(), websocket.MessageText, []byte(announce)); err != nil {
			client.CloseNow()
			up.CloseNow()
			ev.State, ev.Duration, ev.ClosedBy = SessionClosed, time.Since(ev.Started), "client"
			h.report(ev)
			return
		}
	}

	res := bridge(h.m.ctx, client, up)
	ev.State = SessionClosed
	ev.Duration = time.Since(ev.Started)
	ev.FramesIn, ev.BytesIn = res.in.frames.Load(), res.in.bytes.Load()
	ev.FramesOut, ev.BytesOut = res.out.frames.Load(), res.out.bytes.Load()
	ev.CloseCode, ev.ClosedBy = res.code, res.closedBy
	h.report(ev)
}

func (h *CDPHandler) report(ev SessionEvent) {
	if h.cfg.OnSession != nil {
		h.cfg.OnSession(ev)
	}
}

// traffic counts one direction of a session.
type traffic struct{ frames, bytes atomic.Int64 }

type bridgeResult struct {
	in, out  traffic // client→browser, browser→client
	code     int     // the close code received, -1 when the connection dropped
	closedBy string
}

// pumpEnd is why one direction stopped: reading from src failed (the peer
// closed or dropped), or writing to dst did.
type pumpEnd struct {
	err     error
	readErr bool
	src     *websocket.Conn
	dst     *websocket.Conn
}

// bridge passes messages between client and browser until one side closes,
// then closes the other with the same code where the protocol allows it.
// Canceling ctx (moltgate shutting down) ends the session with 1001.
func bridge(ctx context.Context, client, browser *websocket.Conn) *bridgeResult {
	res := &bridgeResult{code: -1}
	ends := make(chan pumpEnd, 2)
	go pump(client, browser, &res.in, ends)
	go pump(browser, client, &res.out, ends)

	var first pumpEnd
	select {
	case first = <-ends:
	case <-ctx.Done():
		res.closedBy = "gateway"
		_ = client.Close(websocket.StatusGoingAway, "moltgate is shutting down")
		browser.CloseNow()
		<-ends
		<-ends
		return res
	}

	// The side that ended the session, and the one to tell.
	origin, other := first.src, first.dst
	if !first.readErr {
		origin, other = first.dst, first.src
	}
	res.closedBy = "client"
	if origin == browser {
		res.closedBy = "browser"
	}
	res.code = int(websocket.CloseStatus(first.err))
	var ce websocket.CloseError
	reason := ""
	if errors.As(first.err, &ce) {
		reason = ce.Reason
	}
	switch {
	case res.code == int(websocket.StatusNoStatusRcvd):
		_ = other.Close(websocket.StatusNormalClosure, "")
	case res.code >= 0:
		_ = other.Close(websocket.StatusCode(res.code), reason)
	case origin == browser:
		_ = other.Close(websocket.StatusInternalError, "the browser closed the connection")
	default:
		_ = other.Close(websocket.StatusGoingAway, "the client went away")
	}
	origin.CloseNow()
	<-ends
	return res
}

// pump copies messages from src to dst, streaming each so that a large
// screenshot is never held whole, until reading or writing fails.
func pump(src, dst *websocket.Conn, t *traffic, ends chan<- pumpEnd) {
	buf := make([]byte, 32<<10)
	end := func(err error, readErr bool) { ends <- pumpEnd{err: err, readErr: readErr, src: src, dst: dst} }
	for {
		// Background contexts: a canceled read context would close the
		// connection without a close frame; bridge closes it properly.
		typ, r, err := src.Reader(context.Background())
		if err != nil {
			end(err, true)
			return
		}
		w, err := dst.Writer(context.Background(), typ)
		if err != nil {
			end(err, false)
			return
		}
		cr := &countingReader{r: r}
		if _, err := io.CopyBuffer(w, cr, buf); err != nil {
			end(err, cr.err != nil)
			return
		}
		if err := w.Close(); err != nil {
			end(err, false)
			return
		}
		t.frames.Add(1)
		t.bytes.Add(cr.n)
	}
}

// countingReader counts what it reads and remembers a read error, to tell
// a failing reader from a failing writer after io.Copy.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}
