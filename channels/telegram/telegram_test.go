package telegram_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/channels/telegram"
	"github.com/moltgate/moltgate/internal/faketelegram"
	"github.com/moltgate/moltgate/internal/syncbuf"
)

func TestNew_Config(t *testing.T) {
	const secretish = "AAHsuperSecretValue_123"
	tests := []struct {
		name string
		cfg  telegram.Config
		want string // in the error
	}{
		{"no token", telegram.Config{}, "Token is required"},
		{"no secret", telegram.Config{Token: "123456:"}, "<bot id>:<secret>"},
		{"no id", telegram.Config{Token: ":" + secretish}, "<bot id>:<secret>"},
		{"letters in the id", telegram.Config{Token: "12a4:" + secretish}, "<bot id>:<secret>"},
		{"space inside", telegram.Config{Token: "123456:" + secretish + " x"}, "<bot id>:<secret>"},
		{"not a token", telegram.Config{Token: secretish}, "<bot id>:<secret>"},
		{"api url", telegram.Config{Token: "123456:" + secretish, APIURL: "api.telegram.org/bot123456:" + secretish}, "APIURL"},
		{"negative poll", telegram.Config{Token: "123456:" + secretish, PollTimeout: -time.Second}, "PollTimeout"},
		{"negative backoff", telegram.Config{Token: "123456:" + secretish, BackoffBase: -time.Second}, "BackoffBase"},
		{"webhook url", telegram.Config{Token: "123456:" + secretish, WebhookURL: "/telegram", WebhookSecret: "abc"}, "WebhookURL"},
		{"webhook without secret", telegram.Config{Token: "123456:" + secretish, WebhookURL: "https://bot.example.com/telegram"}, "WebhookSecret is required"},
		{"webhook secret charset", telegram.Config{Token: "123456:" + secretish, WebhookURL: "https://bot.example.com/telegram", WebhookSecret: "no spaces allowed"}, "WebhookSecret must be"},
		{"client timeout", telegram.Config{Token: "123456:" + secretish, HTTPClient: &http.Client{Timeout: 10 * time.Second}}, "HTTPClient.Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := telegram.New(tt.cfg)
			if err == nil {
				t.Fatal("New accepted a bad config")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secretish) || strings.Contains(err.Error(), "no spaces allowed") {
				t.Errorf("error %q echoes a secret", err)
			}
		})
	}

	a, err := telegram.New(telegram.Config{Token: " 123456:" + secretish + "\n"})
	if err != nil {
		t.Fatalf("a token with surrounding whitespace (as read from a file): %v", err)
	}
	if a.Name() != "telegram" {
		t.Errorf("Name %q", a.Name())
	}
	if st := a.Status(); st.State != moltgate.ChannelStopped || st.Channel != "telegram" {
		t.Errorf("status before Run: %+v", st)
	}
}

func TestAdapter_DM(t *testing.T) {
	fake := faketelegram.New(t)
	cfg := config(fake, nil)
	cfg.PollTimeout = 30 * time.Second // stopping must not wait for the long poll
	a := newAdapter(t, cfg)
	s := start(t, a, nil)
	st := waitStatus(t, a, "running", isRunning)
	if st.AccountID != "123456789" || st.BotName != "moltgate_test_bot" || st.Since.IsZero() || st.LastActivity.IsZero() {
		t.Errorf("running status %+v", st)
	}

	sentAt := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	id := fake.Post(faketelegram.Message{From: alice, Text: "Hello, bot!", Date: sentAt})
	got := s.next(t)
	want := moltgate.InboundMessage{
		ChannelAddress: moltgate.ChannelAddress{Channel: "telegram", AccountID: "123456789", ChatID: "1001"},
		MessageID:      strconv.Itoa(id),
		SenderID:       "1001",
		SenderName:     "Alice Liddell",
		Text:           "Hello, bot!",
		Direct:         true,
		SentAt:         sentAt,
	}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	// A user without a name is shown by @username.
	fake.DM(bob, "hi")
	if got := s.next(t); got.SenderName != "@bob_the_builder" || got.SenderID != "1002" {
		t.Errorf("sender %q %q", got.SenderName, got.SenderID)
	}
	s.stop(t)
	if st := a.Status(); st.State != moltgate.ChannelStopped {
		t.Errorf("after stop: %+v", st)
	}
	if polls := fake.RequestsTo("getUpdates"); polls[len(polls)-1].Params["timeout"] != "30" {
		t.Errorf("long poll timeout %q, want 30", polls[len(polls)-1].Params["timeout"])
	}
}

func TestAdapter_Groups(t *testing.T) {
	fake := faketelegram.New(t)
	a := newAdapter(t, config(fake, nil))
	s := start(t, a, nil)
	waitStatus(t, a, "running", isRunning)

	// The bot's own message, for replies to it.
	fake.Post(faketelegram.Message{Chat: group, From: alice, Text: "setup"})
	s.next(t)
	ids, err := a.Send(context.Background(), moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: strconv.FormatInt(group.ID, 10)}, Text: "I am the bot"})
	if err != nil {
		t.Fatal(err)
	}
	botMsg, _ := strconv.Atoi(ids[0])
	aliceMsg := fake.Post(faketelegram.Message{Chat: group, From: alice, Text: "an ordinary remark"})
	s.next(t)

	tests := []struct {
		name      string
		msg       faketelegram.Message
		text      string
		mentioned bool
		replyTo   int
		thread    string
	}{
		{"no mention", faketelegram.Message{Text: "talking among ourselves"}, "talking among ourselves", false, 0, ""},
		{"mention first", faketelegram.Message{Text: "@moltgate_test_bot what is the time?"}, "what is the time?", true, 0, ""},
		{"mention with colon", faketelegram.Message{Text: "@moltgate_test_bot: summarise"}, "summarise", true, 0, ""},
		{"mention inside", faketelegram.Message{Text: "hey @Moltgate_Test_Bot how are you"}, "hey how are you", true, 0, ""},
		{"mention last, after an emoji", faketelegram.Message{Text: "🦀 thoughts? @moltgate_test_bot"}, "🦀 thoughts?", true, 0, ""},
		{"someone else mentioned", faketelegram.Message{Text: "@alice_w look"}, "@alice_w look", false, 0, ""},
		{"command to the bot", faketelegram.Message{Text: "/ask@moltgate_test_bot why"}, "/ask why", true, 0, ""},
		{"reply to the bot", faketelegram.Message{Text: "thanks", ReplyTo: botMsg}, "thanks", true, botMsg, ""},
		{"reply to someone else", faketelegram.Message{Text: "agreed", ReplyTo: aliceMsg}, "agreed", false, aliceMsg, ""},
		{"forum topic", faketelegram.Message{Chat: forum, Text: "@moltgate_test_bot in topic", ThreadID: 42}, "in topic", true, 0, "42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.msg
			m.From = bob
			if m.Chat.ID == 0 {
				m.Chat = group
			}
			id := fake.Post(m)
			got := s.next(t)
			if got.MessageID != strconv.Itoa(id) || got.Direct || got.ChatID != strconv.FormatInt(m.Chat.ID, 10) {
				t.Errorf("message %s direct %v chat %s", got.MessageID, got.Direct, got.ChatID)
			}
			if got.Text != tt.text || got.Mentioned != tt.mentioned || got.ThreadID != tt.thread {
				t.Errorf("got text %q mentioned %v thread %q, want %q %v %q", got.Text, got.Mentioned, got.ThreadID, tt.text, tt.mentioned, tt.thread)
			}
			wantReply := ""
			if tt.replyTo != 0 {
				wantReply = strconv.Itoa(tt.replyTo)
			}
			if got.ReplyToID != wantReply {
				t.Errorf("ReplyToID %q, want %q", got.ReplyToID, wantReply)
			}
		})
	}
}

func TestAdapter_Attachments(t *testing.T) {
	fake := faketelegram.New(t)
	a := newAdapter(t, config(fake, nil))
	s := start(t, a, nil)
	waitStatus(t, a, "running", isRunning)
	for _, kind := range []string{"photo", "document", "sticker", "voice", "video", "video_note", "audio", "animation"} {
		fake.Post(faketelegram.Message{From: alice, Attachment: kind})
		if got := s.next(t); got.Text != "" || got.Attachments != 1 {
			t.Errorf("%s alone: text %q attachments %d, want \"\" and 1", kind, got.Text, got.Attachments)
		}
	}
	fake.Post(faketelegram.Message{Chat: group, From: alice, Attachment: "photo", Text: "@moltgate_test_bot what is this?"})
	if got := s.next(t); got.Text != "what is this?" || !got.Mentioned || got.Attachments != 1 {
		t.Errorf("captioned photo: %+v", got)
	}
}

func TestAdapter_SkipsMalformedAndBots(t *testing.T) {
	fake := faketelegram.New(t)
	logs := &syncbuf.Buffer{}
	a := newAdapter(t, config(fake, logs))
	s := start(t, a, nil)
	waitStatus(t, a, "running", isRunning)

	fake.InjectRaw(`"not an object"`)
	fake.InjectRaw(`{"message_id":"seven","chat":[]}`)
	fake.InjectRaw(`{"message_id":5,"date":1700000000,"chat":{"id":-1001,"type":"channel","title":"News"},"text":"a channel post has no sender"}`)
	fake.Post(faketelegram.Message{Chat: group, From: faketelegram.User{ID: 999, FirstName: "Other", Username: "other_bot", IsBot: true}, Text: "beep"})
	fake.InjectRaw(`{"message_id":6,"date":1700000000,"chat":{"id":-1001234567890,"type":"supergroup"},"from":{"id":1001,"is_bot":false,"first_name":"Alice"},"new_chat_members":[{"id":1003,"is_bot":false,"first_name":"Carol"}]}`)
	id := fake.DM(alice, "after the junk")
	if got := s.next(t); got.MessageID != strconv.Itoa(id) {
		t.Fatalf("first message handled is %+v, want the DM after the skipped updates", got)
	}
	fake.WaitConfirmed(t, wait) // the skipped updates are confirmed too, not fetched forever
	if !strings.Contains(logs.String(), "skipping a malformed update") {
		t.Errorf("the malformed updates were not logged:\n%s", logs)
	}
	if st := a.Status(); st.State != moltgate.ChannelRunning || st.Reconnects != 0 {
		t.Errorf("status after malformed updates: %+v", st)
	}
	select {
	case m := <-s.msgs:
		t.Errorf("unexpected message %+v", m)
	default:
	}
}

func TestAdapter_HandlerErrorGoesOn(t *testing.T) {
	fake := faketelegram.New(t)
	logs := &syncbuf.Buffer{}
	a := newAdapter(t, config(fake, logs))
	s := start(t, a, func(_ context.Context, m moltgate.InboundMessage) error {
		if m.Text == "first" {
			return errors.New("disk full")
		}
		return nil
	})
	fake.DM(alice, "first")
	fake.DM(alice, "second")
	if got := s.next(t).Text + " " + s.next(t).Text; got != "first second" {
		t.Errorf("handled %q", got)
	}
	fake.WaitConfirmed(t, wait)
	if !strings.Contains(logs.String(), "disk full") {
		t.Errorf("the handler's error was not logged:\n%s", logs)
	}
}

func TestAdapter_TokenRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*faketelegram.Server, *telegram.Config)
	}{
		{"revoked", func(f *faketelegram.Server, _ *telegram.Config) { f.RefuseToken(true) }},
		{"wrong token", func(_ *faketelegram.Server, c *telegram.Config) { c.Token = "123456789:AAHsomeOtherTokenEntirely_77" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := faketelegram.New(t)
			logs := &syncbuf.Buffer{}
			cfg := config(fake, logs)
			tc.setup(fake, &cfg)
			a := newAdapter(t, cfg)
			err := start(t, a, nil).result(t)
			if !errors.Is(err, telegram.ErrTokenRefused) {
				t.Fatalf("Run returned %v, want ErrTokenRefused", err)
			}
			st := a.Status()
			if st.State != moltgate.ChannelFailed || !strings.Contains(st.Error, "401") || !strings.Contains(st.Error, "TELEGRAM_BOT_TOKEN") {
				t.Errorf("status %+v", st)
			}
			secret := cfg.Token[strings.IndexByte(cfg.Token, ':')+1:]
			if strings.Contains(err.Error(), secret) || strings.Contains(st.Error, secret) || strings.Contains(logs.String(), secret) {
				t.Error("the token leaked into the error, status or logs")
			}
			if n := len(fake.RequestsTo("getMe")); n != 1 {
				t.Errorf("getMe called %d times: a refused token must not be retried", n)
			}
		})
	}
}

func TestAdapter_TokenRevokedWhileRunning(t *testing.T) {
	fake := faketelegram.New(t)
	a := newAdapter(t, config(fake, nil))
	s := start(t, a, nil)
	waitStatus(t, a, "running", isRunning)
	fake.RefuseToken(true)
	if err := s.result(t); !errors.Is(err, telegram.ErrTokenRefused) {
		t.Fatalf("Run returned %v, want ErrTokenRefused", err)
	}
	if st := a.Status(); st.State != moltgate.ChannelFailed {
		t.Errorf("status %+v", st)
	}
}

func TestAdapter_TransientFailures(t *testing.T) {
	fake := faketelegram.New(t)
	fake.FailNext("getMe", 2, faketelegram.Failure{Status: 500})
	a := newAdapter(t, config(fake, nil))
	s := start(t, a, nil)
	st := waitStatus(t, a, "running", isRunning)
	if st.Reconnects != 2 || st.Error != "" {
		t.Errorf("after two failed getMe: %+v, want running with 2 reconnects", st)
	}

	// The server fails until told otherwise: connecting, with the reason.
	fake.FailNext("getUpdates", 1000, faketelegram.Failure{Status: 502, Body: "<html><body>502 Bad Gateway</body></html>"})
	st = waitStatus(t, a, "connecting with the 502", func(st moltgate.ChannelStatus) bool {
		return st.State == moltgate.ChannelConnecting && strings.Contains(st.Error, "502") && st.Reconnects > 2
	})
	fake.ClearFailures()
	after := waitStatus(t, a, "running again", func(st moltgate.ChannelStatus) bool { return isRunning(st) && st.Error == "" })
	if after.Reconnects < st.Reconnects {
		t.Errorf("reconnects went from %d to %d", st.Reconnects, after.Reconnects)
	}

	// A dropped connection is the same.
	fake.FailNext("getUpdates", 2, faketelegram.Failure{Drop: true})
	waitStatus(t, a, "two more reconnects", func(st moltgate.ChannelStatus) bool { return isRunning(st) && st.Reconnects >= after.Reconnects+2 })
	fake.DM(alice, "still there?")
	if got := s.next(t); got.Text != "still there?" {
		t.Errorf("after reconnecting got %+v", got)
	}
}

func TestAdapter_Conflict409(t *testing.T) {
	fake := faketelegram.New(t)
	a := newAdapter(t, config(fake, nil))
	s := start(t, a, nil)
	waitStatus(t, a, "running", isRunning)
	before := len(fake.RequestsTo("getUpdates"))
	fake.SetConflict(true)
	st := waitStatus(t, a, "connecting with the conflict", func(st moltgate.ChannelStatus) bool {
		return st.State == moltgate.ChannelConnecting && st.Reconnects >= 4
	})
	if !strings.Contains(st.Error, "another instance") || !strings.Contains(st.Error, "terminated by other getUpdates request") {
		t.Errorf("status error %q does not explain the conflict", st.Error)
	}
	// Backoff, not a tight loop: one poll per reconnect (and the one
	// the conflict interrupted).
	if polls := len(fake.RequestsTo("getUpdates")) - before; polls > a.Status().Reconnects+2 {
		t.Errorf("%d polls for %d reconnects", polls, a.Status().Reconnects)
	}
	fake.SetConflict(false)
	waitStatus(t, a, "running after the conflict", func(st moltgate.ChannelStatus) bool { return isRunning(st) && st.Error == "" })
	fake.DM(alice, "back")
	if got := s.next(t); got.Text != "back" {
		t.Errorf("got %+v", got)
	}
}

func TestAdapter_DeletesWebhookToPoll(t *testing.T) {
	fake := faketelegram.New(t)
	fake.SetWebhook("https://old.example.com/telegram", "oldsecret")
	a := newAdapter(t, config(fake, nil))
	s := start(t, a, nil)
	fake.DM(alice, "polled")
	if got := s.next(t); got.Text != "polled" {
		t.Errorf("got %+v", got)
	}
	if fake.Webhook().URL != "" || len(fake.RequestsTo("deleteWebhook")) != 1 {
		t.Errorf("webhook %+v, deleteWebhook calls %d", fake.Webhook(), len(fake.RequestsTo("deleteWebhook")))
	}
	if st := a.Status(); st.Reconnects != 0 {
		t.Errorf("returning to polling took %d reconnects", st.Reconnects)
	}
}

func TestAdapter_OffsetAcrossRestarts(t *testing.T) {
	fake := faketelegram.New(t)
	cfg := config(fake, nil)

	// A handled update is confirmed and never comes again, neither to a
	// restarted Run nor to a new adapter (a new process).
	a := newAdapter(t, cfg)
	s := start(t, a, nil)
	fake.DM(alice, "one")
	if got := s.next(t); got.Text != "one" {
		t.Fatalf("got %+v", got)
	}
	fake.WaitConfirmed(t, wait)
	s.stop(t)

	s = start(t, a, nil)
	fake.DM(alice, "two")
	if got := s.next(t); got.Text != "two" {
		t.Fatalf("the restarted Run got %q first, want two", got.Text)
	}
	fake.WaitConfirmed(t, wait)
	s.stop(t)

	// An update whose handling was cut short by the stop is not
	// confirmed: the next process gets it again.
	b := newAdapter(t, cfg)
	s = start(t, b, func(ctx context.Context, m moltgate.InboundMessage) error {
		if m.Text == "three" {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	fake.DM(alice, "three")
	if got := s.next(t); got.Text != "three" {
		t.Fatalf("got %+v", got)
	}
	s.stop(t)
	if fake.Pending() != 1 {
		t.Fatalf("%d updates pending, want three's", fake.Pending())
	}

	c := newAdapter(t, cfg)
	s = start(t, c, nil)
	if got := s.next(t); got.Text != "three" {
		t.Fatalf("the new adapter got %q, want three again", got.Text)
	}
	fake.DM(alice, "four")
	if got := s.next(t); got.Text != "four" {
		t.Fatalf("got %q, want four", got.Text)
	}
}

func TestAdapter_RunTwice(t *testing.T) {
	fake := faketelegram.New(t)
	a := newAdapter(t, config(fake, nil))
	start(t, a, nil)
	waitStatus(t, a, "running", isRunning)
	err := a.Run(context.Background(), func(context.Context, moltgate.InboundMessage) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("a second Run: %v", err)
	}
	if err := a.Run(context.Background(), nil); err == nil {
		t.Error("Run accepted a nil handler")
	}
}
