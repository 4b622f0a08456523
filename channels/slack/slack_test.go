package slack

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/internal/fakeslack"
	"github.com/moltgate/moltgate/internal/syncbuf"
)

const wait = 10 * time.Second // deadline for conditions; tests end as soon as they hold

// harness runs an Adapter against a fake until the test ends.
type harness struct {
	t    *testing.T
	fake *fakeslack.Server
	a    *Adapter
	logs *syncbuf.Buffer
	got  chan moltgate.InboundMessage

	mu      sync.Mutex
	handler moltgate.InboundHandler // when set, runs before the message is passed to got
	cancel  context.CancelFunc
	done    chan error
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, fake: fakeslack.New(t), logs: &syncbuf.Buffer{}, got: make(chan moltgate.InboundMessage, 100)}
	h.a = h.adapter(Config{})
	return h
}

// adapter builds an Adapter for the fake; cfg's empty fields get the
// fake's tokens and URL.
func (h *harness) adapter(cfg Config) *Adapter {
	h.t.Helper()
	if cfg.BotToken == "" {
		cfg.BotToken = h.fake.BotToken
	}
	if cfg.AppToken == "" {
		cfg.AppToken = h.fake.AppToken
	}
	if cfg.APIURL == "" {
		cfg.APIURL = strings.TrimSuffix(h.fake.URL, "/") // New adds the slash slack-go needs
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = 10 * time.Millisecond
	}
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// start runs the adapter; the test's cleanup stops it and checks that Run
// returned nil promptly.
func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() {
		h.done <- h.a.Run(ctx, func(ctx context.Context, msg moltgate.InboundMessage) error {
			h.mu.Lock()
			handler := h.handler
			h.mu.Unlock()
			if handler != nil {
				if err := handler(ctx, msg); err != nil {
					return err
				}
			}
			h.got <- msg
			return nil
		})
	}()
	h.t.Cleanup(func() {
		if err := h.stop(); err != nil {
			h.t.Errorf("Run returned %v after cancel, want nil", err)
		}
	})
}

// stop cancels Run and waits for it; calling it twice is harmless.
func (h *harness) stop() error {
	h.t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(wait):
		h.t.Fatal("Run did not return after ctx was cancelled")
		return nil
	}
}

// running starts the adapter and waits until it is connected.
func (h *harness) running() {
	h.t.Helper()
	h.start()
	h.waitStatus("running", func(st moltgate.ChannelStatus) bool { return st.State == moltgate.ChannelRunning })
}

func (h *harness) waitStatus(what string, cond func(moltgate.ChannelStatus) bool) moltgate.ChannelStatus {
	h.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		st := h.a.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("status never became %s; last %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) next() moltgate.InboundMessage {
	h.t.Helper()
	select {
	case msg := <-h.got:
		return msg
	case <-time.After(wait):
		h.t.Fatal("no message handed to the handler")
		return moltgate.InboundMessage{}
	}
}

// nextIs fails unless the next message handed over is the one with ts:
// the way to show that nothing else (a duplicate, an ignored event) came
// before it.
func (h *harness) nextIs(ts string) moltgate.InboundMessage {
	h.t.Helper()
	msg := h.next()
	if msg.MessageID != ts {
		h.t.Fatalf("handed over message %s (%q), want %s", msg.MessageID, msg.Text, ts)
	}
	return msg
}

func TestNew_validation(t *testing.T) {
	const bot, app = "xoxb-123-456-secretbot", "xapp-1-A1-789-secretapp"
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error
	}{
		{"no bot token", Config{AppToken: app}, []string{"BotToken is required", "SLACK_BOT_TOKEN"}},
		{"app token as bot token", Config{BotToken: "xapp-1-A1-789-secretapp2", AppToken: app}, []string{"BotToken is an app-level token (xapp-…)", "SLACK_BOT_TOKEN"}},
		{"user token as bot token", Config{BotToken: "xoxp-1-2-secretuser", AppToken: app}, []string{"BotToken is a user token", "SLACK_BOT_TOKEN"}},
		{"garbage bot token", Config{BotToken: "secretgarbage", AppToken: app}, []string{"must start with xoxb-", "SLACK_BOT_TOKEN"}},
		{"bot token with newline", Config{BotToken: bot + "\n", AppToken: app}, []string{"BotToken contains whitespace", "SLACK_BOT_TOKEN"}},
		{"no app token", Config{BotToken: bot}, []string{"AppToken is required", "SLACK_APP_TOKEN"}},
		{"bot token as app token", Config{BotToken: bot, AppToken: "xoxb-9-9-secretbot2"}, []string{"AppToken is a bot token (xoxb-…)", "SLACK_APP_TOKEN"}},
		{"bad API URL", Config{BotToken: bot, AppToken: app, APIURL: "slack.com/api"}, []string{"APIURL", "not an http(s) URL"}},
		{"negative backoff", Config{BotToken: bot, AppToken: app, BackoffBase: -time.Second}, []string{"BackoffBase must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil {
				t.Fatal("New accepted the config")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows a token", err)
			}
		})
	}

	t.Run("defaults", func(t *testing.T) {
		a, err := New(Config{BotToken: bot, AppToken: app})
		if err != nil {
			t.Fatal(err)
		}
		if a.cfg.APIURL != DefaultAPIURL || a.cfg.BackoffBase != time.Second {
			t.Errorf("APIURL %q, BackoffBase %s; want %q, 1s", a.cfg.APIURL, a.cfg.BackoffBase, DefaultAPIURL)
		}
		if st := a.Status(); st.State != moltgate.ChannelStopped || st.Channel != "slack" {
			t.Errorf("status before Run = %+v", st)
		}
	})
	t.Run("trailing slash added", func(t *testing.T) {
		a, err := New(Config{BotToken: bot, AppToken: app, APIURL: "http://127.0.0.1:1/api"})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := a.cfg.APIURL, "http://127.0.0.1:1/api/"; got != want {
			t.Errorf("APIURL = %q, want %q", got, want)
		}
	})
}

func TestRun_DirectMessage(t *testing.T) {
	h := newHarness(t)
	h.running()
	before := time.Now().Add(-time.Second)
	ts := h.fake.InjectDM("U0ALICE", "alice", "hello there")

	got := h.nextIs(ts)
	want := moltgate.InboundMessage{
		ChannelAddress: moltgate.ChannelAddress{Channel: "slack", AccountID: fakeslack.TeamID, ChatID: fakeslack.DMChannel("U0ALICE")},
		MessageID:      ts, SenderID: "U0ALICE", SenderName: "alice", Text: "hello there", Direct: true,
		SentAt: got.SentAt,
	}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got.SentAt.Before(before) || got.SentAt.After(time.Now().Add(time.Second)) {
		t.Errorf("SentAt %s is not the message's ts %s", got.SentAt, ts)
	}
	st := h.a.Status()
	if st.AccountID != fakeslack.TeamID || st.BotName != fakeslack.BotName || st.LastActivity.IsZero() || st.Error != "" {
		t.Errorf("status = %+v", st)
	}
	// auth.test and chat go with the bot token, the socket with the app token.
	if r := h.fake.Requests("auth.test"); len(r) != 1 || r[0].Token != h.fake.BotToken {
		t.Errorf("auth.test calls = %+v", r)
	}
	if r := h.fake.Requests("apps.connections.open"); len(r) != 1 || r[0].Token != h.fake.AppToken {
		t.Errorf("apps.connections.open calls = %+v", r)
	}
}

func TestRun_ChannelMessages(t *testing.T) {
	h := newHarness(t)
	h.running()
	const channel = "C0GENERAL"
	addr := func(thread string) moltgate.ChannelAddress {
		return moltgate.ChannelAddress{Channel: "slack", AccountID: fakeslack.TeamID, ChatID: channel, ThreadID: thread}
	}

	t.Run("mention outside a thread opens a thread under the message", func(t *testing.T) {
		ts := h.fake.InjectMention(channel, "U0BOB", "bob", "what's up?", "")
		got := h.nextIs(ts)
		if got.ChannelAddress != addr(ts) || !got.Mentioned || got.Direct || got.Text != "what's up?" || got.ReplyToID != "" || got.SenderName != "bob" {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("mention in a thread stays in the thread", func(t *testing.T) {
		parent := h.fake.InjectChannelMessage(channel, "U0BOB", "bob", "a topic", "")
		h.nextIs(parent)
		ts := h.fake.InjectMention(channel, "U0CAROL", "carol", "your view?", parent)
		got := h.nextIs(ts)
		if got.ChannelAddress != addr(parent) || !got.Mentioned || got.ReplyToID != parent || got.Text != "your view?" {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("message without mention", func(t *testing.T) {
		ts := h.fake.InjectChannelMessage(channel, "U0BOB", "bob", "just chatting", "")
		got := h.nextIs(ts)
		if got.ChannelAddress != addr("") || got.Mentioned || got.Direct || got.Text != "just chatting" {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("mention in the middle of the text", func(t *testing.T) {
		m := h.fake.InjectMessage(fakeslack.Message{Channel: channel, User: "U0BOB", Text: "hey <@" + fakeslack.BotUserID + "|moltbot> look"})
		got := h.nextIs(m.TS)
		if !got.Mentioned || got.Text != "hey look" {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("reply in a thread the bot started counts as a mention", func(t *testing.T) {
		m := h.fake.InjectMessage(fakeslack.Message{Channel: channel, User: "U0BOB", Text: "thanks", ThreadTS: "1700000000.000001", ParentUserID: fakeslack.BotUserID})
		got := h.nextIs(m.TS)
		if !got.Mentioned || got.ThreadID != "1700000000.000001" || got.ReplyToID != "1700000000.000001" {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("private channel", func(t *testing.T) {
		ts := h.fake.InjectMention("G0PRIVATE", "U0BOB", "bob", "psst", "")
		got := h.nextIs(ts)
		if got.ChatID != "G0PRIVATE" || got.Direct || !got.Mentioned {
			t.Errorf("got %+v", got)
		}
	})
}

func TestRun_MentionHandedOverOnce(t *testing.T) {
	h := newHarness(t)
	h.running()
	for _, mentionFirst := range []bool{false, true} {
		m := fakeslack.Message{Channel: "C0GENERAL", User: "U0BOB", Text: "<@" + fakeslack.BotUserID + "> ping"}
		if mentionFirst {
			m = h.fake.InjectAppMention(m)
			h.fake.InjectMessage(m)
		} else {
			m = h.fake.InjectMessage(m)
			h.fake.InjectAppMention(m)
		}
		got := h.nextIs(m.TS)
		if !got.Mentioned || got.Text != "ping" || got.ThreadID != m.TS {
			t.Errorf("app_mention first %v: got %+v", mentionFirst, got)
		}
	}
	marker := h.fake.InjectDM("U0BOB", "bob", "marker")
	h.nextIs(marker) // not a second copy of either mention
	h.fake.WaitAllAcked(t, wait)
}

func TestRun_AttachmentOnly(t *testing.T) {
	h := newHarness(t)
	h.running()
	ts := h.fake.InjectAttachmentDM("U0ALICE", "alice", 2)
	got := h.nextIs(ts)
	if got.Text != "" || got.Attachments != 2 || !got.Direct {
		t.Errorf("got %+v, want Text \"\" and 2 attachments", got)
	}
	m := h.fake.InjectMessage(fakeslack.Message{Channel: "C0GENERAL", User: "U0BOB", Text: "see this", Files: 1})
	if got := h.nextIs(m.TS); got.Attachments != 1 || got.Text != "see this" {
		t.Errorf("got %+v", got)
	}
}

func TestRun_IgnoredEvents(t *testing.T) {
	h := newHarness(t)
	h.running()
	h.fake.InjectMessage(fakeslack.Message{Channel: "C0GENERAL", User: "U0OTHERBOT", Text: "beep", BotID: "B0OTHER"})
	h.fake.InjectMessage(fakeslack.Message{Channel: "C0GENERAL", User: "U0BOB", Text: "edited", Subtype: "message_changed"})
	h.fake.InjectMessage(fakeslack.Message{Channel: "C0GENERAL", User: "U0BOB", Text: "<@U0BOB> has joined the channel", Subtype: "channel_join"})
	h.fake.InjectMessage(fakeslack.Message{Channel: "C0GENERAL", User: fakeslack.BotUserID, Text: "me, without bot_id"})
	h.fake.InjectMessage(fakeslack.Message{Channel: fakeslack.DMChannel("U0ALICE"), User: "USLACKBOT", Text: "Reminder: stand-up"})
	// The bot's own message comes back as an event with its bot_id.
	if _, err := h.a.Send(context.Background(), moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: "C0GENERAL"}, Text: "my answer"}); err != nil {
		t.Fatal(err)
	}
	marker := h.fake.InjectDM("U0ALICE", "alice", "marker")
	h.nextIs(marker)
	h.fake.WaitAllAcked(t, wait)
	if n := len(h.fake.Envelopes()); n != 7 {
		t.Errorf("%d envelopes, want 7 (6 ignored + marker)", n)
	}
}

func TestRun_MalformedSkipped(t *testing.T) {
	h := newHarness(t)
	h.running()
	bad := h.fake.InjectMalformed()
	h.fake.SendRaw("this is not JSON")
	ts := h.fake.InjectDM("U0ALICE", "alice", "still there?")
	h.nextIs(ts)
	h.fake.WaitAllAcked(t, wait) // the malformed envelope too, or Slack would resend it forever
	if st := h.a.Status(); st.State != moltgate.ChannelRunning || st.Reconnects != 0 {
		t.Errorf("status = %+v, want running without reconnects", st)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "skipped a malformed envelope") || !strings.Contains(logs, bad) || !strings.Contains(logs, "skipped a frame that is not JSON") {
		t.Errorf("the malformed envelope %s and frame were not logged:\n%s", bad, logs)
	}
}

func TestRun_AcknowledgesBeforeSlowHandler(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	h.handler = func(ctx context.Context, msg moltgate.InboundMessage) error {
		select {
		case <-release: // the first call blocks until every envelope was acknowledged
		case <-ctx.Done():
		}
		return nil
	}
	h.running()
	var sent []string
	for _, text := range []string{"one", "two", "three"} {
		sent = append(sent, h.fake.InjectDM("U0ALICE", "alice", text))
	}
	h.fake.WaitAllAcked(t, wait) // while the handler still holds "one"
	select {
	case msg := <-h.got:
		t.Fatalf("handler returned (%q) before it was released", msg.Text)
	default:
	}
	close(release)
	for _, ts := range sent {
		h.nextIs(ts) // in order
	}
	if late := h.fake.NotAckedWithin(3 * time.Second); len(late) != 0 {
		t.Errorf("envelopes acknowledged after Slack's 3 s: %v", late)
	}
}

func TestRun_HandlerErrorDoesNotStopTheLoop(t *testing.T) {
	h := newHarness(t)
	h.handler = func(ctx context.Context, msg moltgate.InboundMessage) error {
		if msg.Text == "fail" {
			return errors.New("cannot record it")
		}
		return nil
	}
	h.running()
	h.fake.InjectDM("U0ALICE", "alice", "fail")
	ts := h.fake.InjectDM("U0ALICE", "alice", "next")
	h.nextIs(ts)
	if !strings.Contains(h.logs.String(), "cannot record it") {
		t.Error("the handler's error was not logged")
	}
}

func TestRun_SenderNameLookedUpOnce(t *testing.T) {
	h := newHarness(t)
	h.running()
	h.nextIs(h.fake.InjectDM("U0ALICE", "alice", "one"))
	h.nextIs(h.fake.InjectDM("U0ALICE", "", "two"))
	// A user users.info does not know: delivered without a name, asked once.
	for range 2 {
		if got := h.nextIs(h.fake.InjectDM("U0GHOST", "", "boo")); got.SenderName != "" || got.SenderID != "U0GHOST" {
			t.Errorf("got %+v", got)
		}
	}
	if n := len(h.fake.Requests("users.info")); n != 2 {
		t.Errorf("%d users.info calls, want 2 (one per user)", n)
	}
}

func TestRun_DisconnectReconnects(t *testing.T) {
	for _, reason := range []string{"refresh_requested", "link_disabled"} {
		t.Run(reason, func(t *testing.T) {
			h := newHarness(t)
			h.running()
			h.fake.Disconnect(t, reason)
			h.fake.WaitSocket(t, 2, wait)
			if n := len(h.fake.Requests("apps.connections.open")); n != 2 {
				t.Errorf("%d apps.connections.open calls, want 2 (a fresh one after disconnect)", n)
			}
			ts := h.fake.InjectDM("U0ALICE", "alice", "after the refresh")
			h.nextIs(ts)
			st := h.waitStatus("running after one reconnect", func(st moltgate.ChannelStatus) bool {
				return st.State == moltgate.ChannelRunning && st.Reconnects == 1
			})
			if st.Error != "" {
				t.Errorf("status error %q after a planned disconnect", st.Error)
			}
			if n := len(h.fake.Requests("auth.test")); n != 1 {
				t.Errorf("%d auth.test calls, want 1", n)
			}
		})
	}
}

func TestRun_DroppedSocketReconnects(t *testing.T) {
	h := newHarness(t)
	h.running()
	h.nextIs(h.fake.InjectDM("U0ALICE", "alice", "before"))
	h.fake.DropSocket(t)
	h.fake.WaitSocket(t, 2, wait)
	h.nextIs(h.fake.InjectDM("U0ALICE", "alice", "after"))
	h.waitStatus("running after one reconnect", func(st moltgate.ChannelStatus) bool {
		return st.State == moltgate.ChannelRunning && st.Reconnects == 1
	})
}

func TestRun_TransientFailures(t *testing.T) {
	h := newHarness(t)
	h.fake.FailNext("auth.test", 1, fakeslack.ServerError(503))
	h.fake.FailNext("apps.connections.open", 1, fakeslack.RateLimited(0))
	h.fake.FailNext("apps.connections.open", 1000, fakeslack.ServerError(500))
	h.start()
	st := h.waitStatus("connecting after failures", func(st moltgate.ChannelStatus) bool {
		return st.State == moltgate.ChannelConnecting && st.Reconnects >= 3 && strings.Contains(st.Error, "500")
	})
	if !strings.Contains(st.Error, "cannot open a Socket Mode connection") {
		t.Errorf("status error %q does not say what failed", st.Error)
	}
	h.fake.ClearFailures()
	st = h.waitStatus("running", func(st moltgate.ChannelStatus) bool { return st.State == moltgate.ChannelRunning })
	if st.Error != "" {
		t.Errorf("error %q kept after recovering", st.Error)
	}
	// Each failed call is followed by one reconnection (the socketmode
	// client may slip in a retry of its own as it is stopped, uncounted).
	calls := len(h.fake.Requests("auth.test")) + len(h.fake.Requests("apps.connections.open"))
	if st.Reconnects < 3 || st.Reconnects > calls-2 {
		t.Errorf("Reconnects = %d after %d auth.test + apps.connections.open calls, want 3 to %d", st.Reconnects, calls, calls-2)
	}
	h.nextIs(h.fake.InjectDM("U0ALICE", "alice", "made it"))
}

func TestRun_RefusedTokens(t *testing.T) {
	tests := []struct {
		name   string
		refuse func(*fakeslack.Server)
		want   string
		opens  int // apps.connections.open calls
	}{
		{"bot token", func(f *fakeslack.Server) { f.RefuseBotToken(true) }, "slack: the bot token was refused (invalid_auth): check SLACK_BOT_TOKEN", 0},
		{"app token", func(f *fakeslack.Server) { f.RefuseAppToken(true) }, "slack: the app-level token was refused (invalid_auth): check SLACK_APP_TOKEN", 1},
		{"missing scope", func(f *fakeslack.Server) {
			f.FailNext("apps.connections.open", 1, fakeslack.SlackError("missing_scope"))
		}, "refused (missing_scope): check SLACK_APP_TOKEN (it needs the connections:write scope)", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.refuse(h.fake)
			err := h.a.Run(context.Background(), func(context.Context, moltgate.InboundMessage) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error saying %q", err, tt.want)
			}
			st := h.a.Status()
			if st.State != moltgate.ChannelFailed || st.Error != err.Error() {
				t.Errorf("status = %+v, want failed with the error", st)
			}
			if n := len(h.fake.Requests("apps.connections.open")); n != tt.opens {
				t.Errorf("%d apps.connections.open calls, want %d", n, tt.opens)
			}
		})
	}
}

func TestRun_StopsAndRunsAgain(t *testing.T) {
	h := newHarness(t)
	h.running()
	h.nextIs(h.fake.InjectDM("U0ALICE", "alice", "first run"))
	if err := h.stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if st := h.a.Status(); st.State != moltgate.ChannelStopped {
		t.Errorf("state after stop = %s", st.State)
	}
	h.fake.WaitFor(t, wait, "the socket to close", func() bool { _, open := h.fake.Sockets(); return open == 0 })

	h.running()
	h.fake.WaitSocket(t, 2, wait)
	h.nextIs(h.fake.InjectDM("U0ALICE", "alice", "second run"))
}

func TestRun_NoGoroutineLeft(t *testing.T) {
	h := newHarness(t)
	baseline := runtime.NumGoroutine()
	h.running()
	h.nextIs(h.fake.InjectDM("U0ALICE", "alice", "hi"))
	h.fake.DropSocket(t) // a reconnection on the way, too
	h.fake.WaitSocket(t, 2, wait)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections() // slack-go's client keeps Web API connections alive
		n := runtime.NumGoroutine()
		if n <= baseline {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Run returned, %d before:\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRun_CancelWhileRetrying(t *testing.T) {
	h := newHarness(t)
	h.a = h.adapter(Config{BackoffBase: time.Hour})
	h.fake.FailNext("auth.test", 1, fakeslack.ServerError(500))
	h.start()
	h.waitStatus("connecting with an error", func(st moltgate.ChannelStatus) bool { return st.Error != "" })
	if err := h.stop(); err != nil { // returns at once, not after the hour
		t.Fatal(err)
	}
}

func TestSend(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	to := moltgate.ChannelAddress{Channel: "slack", ChatID: "C0GENERAL", ThreadID: "1700000000.000100"}

	t.Run("long text is split in order within the limit, in the thread", func(t *testing.T) {
		var paragraphs []string
		for i := range 30 {
			paragraphs = append(paragraphs, strings.Repeat(string(rune('a'+i%26)), 300)+".")
		}
		text := strings.Join(paragraphs, "\n\n") // 9,000+ characters
		ids, err := h.a.Send(ctx, moltgate.OutboundMessage{ChannelAddress: to, Text: text})
		if err != nil {
			t.Fatal(err)
		}
		sent := h.fake.WaitSent(t, len(ids), wait)
		if len(ids) < 3 || len(sent) != len(ids) {
			t.Fatalf("%d ids, %d messages sent, want 3 or more of each", len(ids), len(sent))
		}
		var joined []string
		for i, m := range sent {
			if n := len([]rune(m.Text)); n > TextLimit {
				t.Errorf("piece %d has %d characters", i, n)
			}
			if m.TS != ids[i] || m.Channel != to.ChatID || m.ThreadTS != to.ThreadID {
				t.Errorf("piece %d = %+v, id %s", i, m, ids[i])
			}
			joined = append(joined, m.Text)
		}
		if strings.Join(joined, "\n\n") != text {
			t.Error("the pieces do not make up the text in order")
		}
	})
	t.Run("reply without thread opens a thread under the message", func(t *testing.T) {
		before := len(h.fake.Sent())
		_, err := h.a.Send(ctx, moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: "C0GENERAL"}, ReplyToID: "1700000000.000200", Text: "sure"})
		if err != nil {
			t.Fatal(err)
		}
		if m := h.fake.Sent()[before]; m.ThreadTS != "1700000000.000200" || m.Text != "sure" {
			t.Errorf("sent %+v", m)
		}
	})
	t.Run("text is escaped", func(t *testing.T) {
		before := len(h.fake.Sent())
		if _, err := h.a.Send(ctx, moltgate.OutboundMessage{ChannelAddress: to, Text: "<!channel> a & b"}); err != nil {
			t.Fatal(err)
		}
		if got, want := h.fake.Sent()[before].Text, "&lt;!channel&gt; a &amp; b"; got != want {
			t.Errorf("sent %q, want %q", got, want)
		}
	})
}

func TestSend_Errors(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	to := moltgate.ChannelAddress{ChatID: "C0GENERAL"}
	tests := []struct {
		name       string
		failure    fakeslack.Failure
		msg        moltgate.OutboundMessage
		retryable  bool
		retryAfter time.Duration
		want       string
	}{
		{"rate limited", fakeslack.RateLimited(7), moltgate.OutboundMessage{}, true, 7 * time.Second, "rate limited (HTTP 429)"},
		{"rate limited without Retry-After", fakeslack.Failure{Status: 429, Error: "ratelimited"}, moltgate.OutboundMessage{}, true, 0, "429"},
		{"channel not found", fakeslack.SlackError("channel_not_found"), moltgate.OutboundMessage{}, false, 0, "cannot send to C0GENERAL: channel_not_found"},
		{"not in channel", fakeslack.SlackError("not_in_channel"), moltgate.OutboundMessage{}, false, 0, "not_in_channel"},
		{"archived", fakeslack.SlackError("is_archived"), moltgate.OutboundMessage{}, false, 0, "is_archived"},
		{"internal error", fakeslack.SlackError("internal_error"), moltgate.OutboundMessage{}, true, 0, "internal_error"},
		{"500", fakeslack.ServerError(500), moltgate.OutboundMessage{}, true, 0, "500"},
		{"503", fakeslack.ServerError(503), moltgate.OutboundMessage{}, true, 0, "503"},
		{"403", fakeslack.Failure{Status: 403}, moltgate.OutboundMessage{}, false, 0, "403"},
		{"empty text", fakeslack.Failure{}, moltgate.OutboundMessage{ChannelAddress: to, Text: "  \n"}, false, 0, "empty message"},
		{"no channel", fakeslack.Failure{}, moltgate.OutboundMessage{Text: "hi"}, false, 0, "no channel id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.msg
			if msg == (moltgate.OutboundMessage{}) {
				msg = moltgate.OutboundMessage{ChannelAddress: to, Text: "hello"}
				h.fake.FailNext("chat.postMessage", 1, tt.failure)
			}
			ids, err := h.a.Send(ctx, msg)
			var d *moltgate.DeliveryError
			if !errors.As(err, &d) {
				t.Fatalf("Send = %v, %v; want a *DeliveryError", ids, err)
			}
			if d.Retryable != tt.retryable || d.RetryAfter != tt.retryAfter || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q retryable %v after %s; want %q retryable %v after %s", err, d.Retryable, d.RetryAfter, tt.want, tt.retryable, tt.retryAfter)
			}
			if len(ids) != 0 {
				t.Errorf("ids %v for a failed send", ids)
			}
		})
	}
	if n := len(h.fake.Sent()); n != 0 {
		t.Errorf("%d messages recorded as sent", n)
	}

	t.Run("network failure", func(t *testing.T) {
		a := h.adapter(Config{APIURL: "http://127.0.0.1:1/api/"})
		_, err := a.Send(ctx, moltgate.OutboundMessage{ChannelAddress: to, Text: "hello"})
		if d := moltgate.AsDeliveryError(err); err == nil || !d.Retryable {
			t.Errorf("Send = %v, want a retryable error", err)
		}
	})
	t.Run("second piece fails", func(t *testing.T) {
		before := len(h.fake.Sent())
		text := strings.Repeat("word ", 1000)                       // two pieces
		h.fake.FailNext("chat.postMessage", 1, fakeslack.Failure{}) // the first goes through
		h.fake.FailNext("chat.postMessage", 1, fakeslack.SlackError("is_archived"))
		ids, err := h.a.Send(ctx, moltgate.OutboundMessage{ChannelAddress: to, Text: text})
		if err == nil || len(ids) != 1 || len(h.fake.Sent()) != before+1 || ids[0] != h.fake.Sent()[before].TS {
			t.Errorf("Send = %v, %v; want the first id and the error", ids, err)
		}
	})
}

func TestTyping(t *testing.T) {
	h := newHarness(t)
	if err := h.a.Typing(context.Background(), moltgate.ChannelAddress{ChatID: "C0GENERAL"}); err != nil {
		t.Fatal(err)
	}
	if r := h.fake.Requests(""); len(r) != 0 {
		t.Errorf("Typing made requests: %+v", r)
	}
}

// TestSecrets_NeverLogged drives every path that logs or returns errors and
// checks neither token shows up, with logging at debug level.
func TestSecrets_NeverLogged(t *testing.T) {
	h := newHarness(t)
	h.fake.FailNext("auth.test", 1, fakeslack.ServerError(500))
	h.fake.FailNext("apps.connections.open", 1, fakeslack.SlackError("internal_error"))
	h.running()
	var errs []string
	h.fake.InjectMalformed()
	h.fake.SendRaw("{not json")
	h.fake.Disconnect(t, "refresh_requested")
	h.fake.WaitSocket(t, 2, wait)
	h.fake.DropSocket(t)
	h.fake.WaitSocket(t, 3, wait)
	h.nextIs(h.fake.InjectDM("U0GHOST", "", "who am I")) // users.info fails
	for _, f := range []fakeslack.Failure{fakeslack.RateLimited(1), fakeslack.SlackError("channel_not_found"), fakeslack.ServerError(502)} {
		h.fake.FailNext("chat.postMessage", 1, f)
		_, err := h.a.Send(context.Background(), moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: "C1"}, Text: "x"})
		errs = append(errs, err.Error())
	}
	h.stop()

	for _, refuse := range []func(bool){h.fake.RefuseBotToken, h.fake.RefuseAppToken} {
		refuse(true)
		a := h.adapter(Config{})
		err := a.Run(context.Background(), func(context.Context, moltgate.InboundMessage) error { return nil })
		errs = append(errs, err.Error(), a.Status().Error)
		refuse(false)
	}

	all := h.logs.String() + strings.Join(errs, "\n")
	if !strings.Contains(all, "refused") || !strings.Contains(all, "malformed") {
		t.Fatalf("the scenario did not log what it should:\n%s", all)
	}
	for _, token := range []string{h.fake.BotToken, h.fake.AppToken} {
		secret := token[strings.LastIndex(token, "-")+1:]
		if strings.Contains(all, secret) {
			t.Errorf("a token shows in the logs or errors:\n%s", all)
		}
	}
}

func TestParseTS(t *testing.T) {
	tests := []struct {
		ts   string
		want time.Time
	}{
		{"1700000000.000100", time.Unix(1700000000, 100_000)},
		{"1700000000.5", time.Unix(1700000000, 500_000_000)},
		{"1700000000", time.Unix(1700000000, 0)},
		{"", time.Time{}},
		{"abc.def", time.Time{}},
	}
	for _, tt := range tests {
		if got := parseTS(tt.ts); !got.Equal(tt.want) {
			t.Errorf("parseTS(%q) = %s, want %s", tt.ts, got, tt.want)
		}
	}
}

func TestRun_PingsAreSignsOfLife(t *testing.T) {
	h := newHarness(t)
	h.running()
	since := h.a.Status().LastActivity
	// No message: only the fake's WebSocket pings (every second) arrive.
	h.waitStatus("later activity", func(st moltgate.ChannelStatus) bool { return st.LastActivity.After(since) })
	if n := len(h.fake.Envelopes()); n != 0 {
		t.Errorf("%d envelopes sent; the test needs none", n)
	}
}
