package api_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/agent"
	"github.com/moltgate/moltgate/api"
	"github.com/moltgate/moltgate/commands"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/projections"
	"github.com/moltgate/moltgate/secrets"
)

const testToken = "test-gateway-token-0123456789"

// harness is a running gateway over a real log in a temp dir.
type harness struct {
	t      testing.TB
	path   string
	url    string
	log    *eventlog.Log
	models *projections.Set
	runner *projections.Runner
	agent  *agent.Runner
	gw     *api.Gateway
	svc    *commands.Service
	server *api.Server
	cancel context.CancelFunc
}

func newHarness(t testing.TB, path string, provider agent.Provider) *harness {
	return newHarnessReplica(t, path, provider, nil)
}

// newHarnessReplica is newHarness with the log replicated to replica.
func newHarnessReplica(t testing.TB, path string, provider agent.Provider, replica *eventlog.ReplicaConfig) *harness {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "moltgate.db")
	}
	h := &harness{t: t, path: path}
	h.log = eventlog.NewLog(path)
	h.log.Replica = replica
	h.log.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := h.log.Open(); err != nil {
		t.Fatal(err)
	}
	h.models = projections.NewSet()
	h.runner = projections.NewRunner(h.log, h.models.All()...)
	if _, err := h.runner.RunToEnd(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.runner.Start(context.Background())
	svc := commands.New(h.log, h.runner, h.models)
	key, _ := secrets.ParseKey(strings.Repeat("22", 32))
	svc.Sealer, _ = secrets.NewSealer(key)
	h.svc = svc
	h.gw = api.NewGateway(testToken)
	h.gw.Policy.TickInterval = 200 * time.Millisecond
	h.gw.Policy.HandshakeTimeout = 2 * time.Second
	h.gw.Trust = &api.Trust{Loopback: true} // the tests' clients dial 127.0.0.1
	h.gw.Devices, h.gw.Config, h.gw.Chat = svc, svc, svc
	h.gw.Queries, h.gw.Events, h.gw.Storage = h.models, h.log, h.log
	h.gw.TokenHash = commands.HashToken
	h.gw.Logger = h.log.Logger
	h.agent = agent.NewRunner(svc, h.gw, func() agent.Resolution {
		return agent.Resolution{Choices: []agent.Choice{{Name: "test/model", Model: "model", Provider: provider}}}
	})
	h.agent.Logger = h.log.Logger
	h.agent.DeltaInterval = 0 // one chat event per token, so tests can count them
	h.gw.Runs, svc.Runs = h.agent, h.agent
	h.gw.ModelInfo = agent.Resolution{}.Info // what clients are told: nothing configured
	h.server = api.NewServer("127.0.0.1:0")
	h.server.MountGateway(h.gw, api.WebChat)
	if err := h.server.Open(); err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, h.cancel = context.WithCancel(context.Background())
	h.gw.Follow(ctx, h.log.LastSeq())
	h.server.Ready()
	h.url = strings.Replace(h.server.URL(), "http://", "ws://", 1)
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	if h.cancel == nil {
		return
	}
	h.server.Close(context.Background())
	h.gw.Close()
	h.cancel()
	h.agent.Close(context.Background())
	h.runner.Close()
	h.log.Close(context.Background())
	h.cancel = nil
}

// client is a real WebSocket client speaking the protocol.
type client struct {
	t      testing.TB
	ws     *websocket.Conn
	nonce  string
	ts     int64
	hello  map[string]any
	events chan map[string]any
	res    chan map[string]any
	closed chan error
	n      int
}

// dial opens a connection and reads the challenge.
func dial(t testing.TB, url string) *client {
	t.Helper()
	return dialWith(t, url, nil)
}

// dialSmallWindow dials with a tiny socket receive buffer, so a client that
// stops reading backs up into the gateway's queue at once instead of into
// megabytes of kernel buffers.
func dialSmallWindow(t testing.TB, url string) *client {
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	return dialWith(t, url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}})
}

func dialWith(t testing.TB, url string, opts *websocket.DialOptions) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(16 << 20)
	c := &client{t: t, ws: ws, events: make(chan map[string]any, 1024), res: make(chan map[string]any, 64), closed: make(chan error, 1)}
	t.Cleanup(func() { ws.CloseNow() })
	var challenge map[string]any
	_, data, err := ws.Read(ctx)
	if err != nil || json.Unmarshal(data, &challenge) != nil || challenge["event"] != "connect.challenge" {
		t.Fatalf("challenge = %s %v", data, err)
	}
	p := challenge["payload"].(map[string]any)
	c.nonce, c.ts = p["nonce"].(string), int64(p["ts"].(float64))
	return c
}

func (c *client) pump() {
	go func() {
		for {
			_, data, err := c.ws.Read(context.Background())
			if err != nil {
				c.closed <- err
				close(c.events)
				return
			}
			var f map[string]any
			json.Unmarshal(data, &f)
			if f["type"] == "res" {
				c.res <- f
			} else {
				c.events <- f
			}
		}
	}()
}

// device is an Ed25519 identity, as an OpenClaw client keeps one.
type device struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newDevice() *device {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return &device{pub, priv}
}

func (d *device) id() string {
	sum := sha256.Sum256(d.pub)
	return hex.EncodeToString(sum[:])
}

type connectOpts struct {
	token    string
	scopes   []string
	device   *device
	tamper   func(params map[string]any) // after signing
	signedAt int64
	nonce    string
	v2       bool
	raw      bool // the caller reads frames itself: no pump
}

// connect sends connect and returns the response frame.
func (c *client) connect(o connectOpts) map[string]any {
	c.t.Helper()
	if o.scopes == nil {
		o.scopes = []string{"operator.read", "operator.write", "operator.pairing", "operator.admin"}
	}
	params := map[string]any{
		"minProtocol": 4, "maxProtocol": 4, "role": "operator", "scopes": o.scopes, "caps": []string{},
		"client": map[string]any{"id": "cli", "version": "2026.9.6", "platform": "Linux ", "deviceFamily": "Linux", "mode": "cli", "instanceId": "i1"},
		"auth":   map[string]any{"token": o.token},
	}
	if o.device != nil {
		signedAt, nonce := c.ts, c.nonce
		if o.signedAt != 0 {
			signedAt = o.signedAt
		}
		if o.nonce != "" {
			nonce = o.nonce
		}
		fields := []string{o.device.id(), "cli", "cli", "operator", strings.Join(o.scopes, ","), fmt.Sprint(signedAt), o.token, nonce}
		payload := "v3|" + strings.Join(fields, "|") + "|linux|linux"
		if o.v2 {
			payload = "v2|" + strings.Join(fields, "|")
		}
		params["device"] = map[string]any{"id": o.device.id(), "publicKey": base64.RawURLEncoding.EncodeToString(o.device.pub),
			"signature": base64.RawURLEncoding.EncodeToString(ed25519.Sign(o.device.priv, []byte(payload))), "signedAt": signedAt, "nonce": nonce}
	}
	if o.tamper != nil {
		o.tamper(params)
	}
	c.write(map[string]any{"type": "req", "id": "connect-1", "method": "connect", "params": params})
	res := c.readRes()
	if res["ok"] == true {
		c.hello = res["payload"].(map[string]any)
		if !o.raw {
			c.pump()
		}
	}
	return res
}

func (c *client) write(v any) {
	c.t.Helper()
	data, _ := json.Marshal(v)
	if err := c.ws.Write(context.Background(), websocket.MessageText, data); err != nil {
		c.t.Fatal(err)
	}
}

// readRes reads one frame directly (before pump) as a response.
func (c *client) readRes() map[string]any {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, data, err := c.ws.Read(ctx)
	if err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	var f map[string]any
	json.Unmarshal(data, &f)
	return f
}

// call sends a request and waits for its response.
func (c *client) call(method string, params any) map[string]any {
	c.t.Helper()
	c.n++
	id := fmt.Sprintf("r%d", c.n)
	c.write(map[string]any{"type": "req", "id": id, "method": method, "params": params})
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f := <-c.res:
			if f["id"] == id {
				return f
			}
		case <-timeout:
			c.t.Fatalf("no response to %s", method)
		}
	}
}

// ok calls and fails the test unless the response is ok.
func (c *client) ok(method string, params any) map[string]any {
	c.t.Helper()
	res := c.call(method, params)
	if res["ok"] != true {
		c.t.Fatalf("%s failed: %v", method, res["error"])
	}
	p, _ := res["payload"].(map[string]any)
	return p
}

// event waits for an event matching name (and pred, when given).
func (c *client) event(name string, pred func(map[string]any) bool) map[string]any {
	c.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-c.events:
			if !ok {
				c.t.Fatalf("connection closed while waiting for %s", name)
			}
			if f["event"] == name {
				p, _ := f["payload"].(map[string]any)
				if pred == nil || pred(p) {
					return p
				}
			}
		case <-timeout:
			c.t.Fatalf("no %s event", name)
		}
	}
}

// closeStatus waits for the server to close the connection.
func (c *client) closeStatus() (websocket.StatusCode, string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, _, err := c.ws.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Reason
			}
			return websocket.CloseStatus(err), err.Error()
		}
	}
}

func errCode(res map[string]any) string {
	e, _ := res["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func errDetail(res map[string]any, key string) any {
	e, _ := res["error"].(map[string]any)
	d, _ := e["details"].(map[string]any)
	return d[key]
}

// operator connects as a trusted local client with every scope.
func (h *harness) operator(scopes ...string) *client {
	h.t.Helper()
	c := dial(h.t, h.url)
	if res := c.connect(connectOpts{token: testToken, scopes: scopes}); res["ok"] != true {
		h.t.Fatalf("operator connect: %v", res["error"])
	}
	return c
}

var _ = moltgate.Version

func eventlogAll() eventlog.Filter { return eventlog.Filter{} }
