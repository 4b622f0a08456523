package telegram_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/channels/telegram"
	"github.com/moltgate/moltgate/internal/faketelegram"
	"github.com/moltgate/moltgate/internal/syncbuf"
)

const webhookSecret = "s3cret-Value_1"

// gateway stands for the lead's HTTP server: it mounts the adapter's
// webhook handler, and can be made to fail as an unreachable gateway
// would.
type gateway struct {
	URL         string
	adapter     atomic.Pointer[telegram.Adapter]
	broken      atomic.Bool
	unavailable atomic.Int32 // 503 answers from the adapter
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func newGateway(t *testing.T) *gateway {
	g := &gateway{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.broken.Load() || r.URL.Path != "/telegram/webhook" {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		g.adapter.Load().WebhookHandler().ServeHTTP(rec, r)
		if rec.status == http.StatusServiceUnavailable {
			g.unavailable.Add(1)
		}
	}))
	t.Cleanup(srv.Close)
	g.URL = srv.URL + "/telegram/webhook"
	return g
}

func webhookAdapter(t *testing.T, fake *faketelegram.Server) (*telegram.Adapter, *gateway) {
	g := newGateway(t)
	cfg := config(fake, nil)
	cfg.WebhookURL, cfg.WebhookSecret = g.URL, webhookSecret
	a := newAdapter(t, cfg)
	g.adapter.Store(a)
	return a, g
}

func update(text string) []byte {
	return []byte(`{"update_id":900000001,"message":{"message_id":4242,"date":1700000000,` +
		`"chat":{"id":1001,"type":"private","first_name":"Alice"},` +
		`"from":{"id":1001,"is_bot":false,"first_name":"Alice"},"text":"` + text + `"}}`)
}

func TestWebhook_Mode(t *testing.T) {
	fake := faketelegram.New(t)
	a, g := webhookAdapter(t, fake)
	s := start(t, a, nil)
	waitStatus(t, a, "running", isRunning)
	hook := fake.Webhook()
	if hook.URL != g.URL || hook.Secret != webhookSecret || !slices.Equal(hook.AllowedUpdates, []string{"message"}) {
		t.Errorf("webhook set to %+v", hook)
	}

	// Telegram pushes a message with the secret.
	fake.DM(alice, "pushed to the webhook")
	if got := s.next(t); got.Text != "pushed to the webhook" || got.SenderID != "1001" || !got.Direct {
		t.Errorf("got %+v", got)
	}
	fake.WaitConfirmed(t, wait)

	for _, tt := range []struct {
		name, secret string
		body         []byte
		want         int
	}{
		{"no secret", "", update("forged"), http.StatusUnauthorized},
		{"wrong secret", "s3cret-Value_2", update("forged"), http.StatusUnauthorized},
		{"malformed update", webhookSecret, []byte(`{"update_id":900000002,"message":"not an object"}`), http.StatusOK},
		{"not JSON", webhookSecret, []byte(`<xml/>`), http.StatusOK},
		{"right secret", webhookSecret, update("posted by hand"), http.StatusOK},
	} {
		status, err := faketelegram.PostWebhook(g.URL, tt.secret, tt.body)
		if err != nil || status != tt.want {
			t.Errorf("%s: HTTP %d %v, want %d", tt.name, status, err, tt.want)
		}
	}
	// Only the right secret's message reached the handler.
	if got := s.next(t); got.Text != "posted by hand" || got.MessageID != "4242" {
		t.Errorf("got %+v", got)
	}
	resp, err := http.Get(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: HTTP %d", resp.StatusCode)
	}
	if n := len(fake.RequestsTo("getUpdates")); n != 0 {
		t.Errorf("webhook mode polled %d times", n)
	}

	// Stopped: Telegram is told to come back later, and does.
	s.stop(t)
	if status, _ := faketelegram.PostWebhook(g.URL, webhookSecret, update("while stopped")); status != http.StatusServiceUnavailable {
		t.Errorf("while stopped: HTTP %d, want 503", status)
	}
	before := g.unavailable.Load()
	fake.DM(alice, "sent while stopped")
	waitFor(t, "the fake's delivery refused", func() bool { return g.unavailable.Load() > before })
	s = start(t, a, nil)
	if got := s.next(t); got.Text != "sent while stopped" {
		t.Errorf("after restart got %+v", got)
	}
	fake.WaitConfirmed(t, wait)
}

func TestWebhook_HandlerInPollingMode(t *testing.T) {
	fake := faketelegram.New(t)
	a := newAdapter(t, config(fake, nil))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/telegram/webhook", strings.NewReader(string(update("x"))))
	req.Header.Set("X-Telegram-Bot-Api-Secret-Token", webhookSecret)
	a.WebhookHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Errorf("HTTP %d, want 404 in polling mode", rec.Code)
	}
}

func TestWebhook_DeliveryErrorShown(t *testing.T) {
	fake := faketelegram.New(t)
	a, g := webhookAdapter(t, fake)
	s := start(t, a, nil)
	waitStatus(t, a, "running", isRunning)
	g.broken.Store(true)
	fake.DM(alice, "lost in the network")
	waitStatus(t, a, "running with Telegram's delivery error", func(st moltgate.ChannelStatus) bool {
		return isRunning(st) && strings.Contains(st.Error, "cannot deliver to the webhook: Wrong response from the webhook: 502")
	})
	g.broken.Store(false)
	if got := s.next(t); got.Text != "lost in the network" {
		t.Errorf("got %+v", got)
	}
	waitStatus(t, a, "running without error", func(st moltgate.ChannelStatus) bool { return isRunning(st) && st.Error == "" })
}

func TestWebhook_SetAgainWhenReplaced(t *testing.T) {
	fake := faketelegram.New(t)
	a, g := webhookAdapter(t, fake)
	s := start(t, a, nil)
	waitStatus(t, a, "running", isRunning)
	fake.SetWebhook("", "") // someone called deleteWebhook
	waitStatus(t, a, "running after a reconnect", func(st moltgate.ChannelStatus) bool { return isRunning(st) && st.Reconnects >= 1 })
	if hook := fake.Webhook(); hook.URL != g.URL || hook.Secret != webhookSecret {
		t.Errorf("webhook %+v, want it set again", hook)
	}
	fake.DM(alice, "hello again")
	if got := s.next(t); got.Text != "hello again" {
		t.Errorf("got %+v", got)
	}
}

func TestWebhook_RefusedURL(t *testing.T) {
	fake := faketelegram.New(t)
	cfg := config(fake, nil)
	// Telegram refuses a plain-http webhook with 400: retrying cannot
	// help.
	cfg.WebhookURL, cfg.WebhookSecret = "http://bot.example.com/telegram", webhookSecret
	a := newAdapter(t, cfg)
	err := start(t, a, nil).result(t)
	if err == nil || !strings.Contains(err.Error(), "refused WebhookURL") || a.Status().State != moltgate.ChannelFailed {
		t.Errorf("Run returned %v, status %+v", err, a.Status())
	}
}

// TestAdapter_NoTokenInErrorsOrLogs drives every failure path whose error
// may carry the request URL or a proxy's page echoing it, and checks that
// the token's secret never reaches an error, the status or a log line.
func TestAdapter_NoTokenInErrorsOrLogs(t *testing.T) {
	fake := faketelegram.New(t)
	logs := &syncbuf.Buffer{}
	secret := fake.Token[strings.IndexByte(fake.Token, ':')+1:]
	echo := faketelegram.Failure{Status: 404, Body: "<html>Cannot POST /bot" + fake.Token + "/method</html>"}
	var seen []string // every error and status error observed
	check := func(what, s string) {
		t.Helper()
		seen = append(seen, s)
		if strings.Contains(s, secret) {
			t.Errorf("%s shows the token: %s", what, s)
		}
	}

	a := newAdapter(t, config(fake, logs))
	fake.FailNext("getMe", 1000, echo)
	s := start(t, a, nil)
	st := waitStatus(t, a, "connecting with the proxy page", func(st moltgate.ChannelStatus) bool { return strings.Contains(st.Error, "Cannot POST") })
	check("status", st.Error)
	fake.ClearFailures()
	fake.FailNext("getMe", 1, faketelegram.Failure{Drop: true})
	waitStatus(t, a, "running", isRunning)
	fake.FailNext("getUpdates", 1, faketelegram.Failure{Drop: true})
	fake.FailNext("getUpdates", 1, echo)
	waitStatus(t, a, "running after two poll failures", func(st moltgate.ChannelStatus) bool { return isRunning(st) && st.Reconnects >= 3 })

	fake.DM(alice, "hi")
	s.next(t)
	for _, f := range []faketelegram.Failure{echo, {Drop: true}, {Status: 429, RetryAfter: 1}} {
		fake.FailNext("sendMessage", 1, f)
		_, err := a.Send(context.Background(), moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: "1001"}, Text: "x"})
		if err == nil {
			t.Fatalf("Send succeeded despite %+v", f)
		}
		check("Send error", err.Error())
		fake.FailNext("sendChatAction", 1, f)
		check("Typing error", a.Typing(context.Background(), moltgate.ChannelAddress{ChatID: "1001"}).Error())
	}
	s.stop(t)

	// Nothing listens: the connection is refused, with the URL in the
	// error.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	cfg := config(fake, logs)
	cfg.APIURL = "http://" + l.Addr().String()
	b := newAdapter(t, cfg)
	s = start(t, b, nil)
	check("status", waitStatus(t, b, "connecting", func(st moltgate.ChannelStatus) bool { return st.Reconnects >= 2 }).Error)
	_, err = b.Send(context.Background(), moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: "1001"}, Text: "x"})
	var de *moltgate.DeliveryError
	if !errors.As(err, &de) || !de.Retryable {
		t.Errorf("a refused connection: %v, want retryable", err)
	}
	check("Send error", err.Error())
	s.stop(t)

	check("logs", logs.String())
	// The redaction did happen: the failures carried the token.
	all := strings.Join(seen, "\n")
	if !strings.Contains(all, "<redacted>") || !strings.Contains(logs.String(), "<redacted>") {
		t.Errorf("no failure carried the token, so the test proves nothing:\n%s\n%s", all, logs)
	}
}
