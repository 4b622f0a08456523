package discord_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/channels/discord"
	"github.com/moltgate/moltgate/internal/fakediscord"
)

// longText is n paragraphs of about 300 characters.
func longText(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "Paragraph %d. %s\n\n", i, strings.Repeat("lorem ipsum dolor sit amet ", 11))
	}
	return b.String()
}

func TestSend_SplitsLongTextInOrder(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)
	srv.DM("4242", "alice", "tell me a long story")
	in := r.next(t)
	question, to := in.MessageID, in.ChannelAddress
	text := longText(20) + "@everyone <@4242> <@&1>"

	ids, err := a.Send(t.Context(), moltgate.OutboundMessage{ChannelAddress: to, Text: text, ReplyToID: question})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	sent := srv.Sent()
	if len(sent) < 3 || len(ids) != len(sent) {
		t.Fatalf("sent %d messages, returned %d ids; want ≥3 pieces, one id each", len(sent), len(ids))
	}
	var joined []string
	for i, m := range sent {
		if m.ID != ids[i] {
			t.Errorf("id %d = %s, want %s (order)", i, ids[i], m.ID)
		}
		if n := utf8.RuneCountInString(m.Content); n > 2000 {
			t.Errorf("piece %d has %d characters, want ≤ 2000", i, n)
		}
		if m.ChannelID != to.ChatID {
			t.Errorf("piece %d went to channel %s, want %s", i, m.ChannelID, to.ChatID)
		}
		wantReply := ""
		if i == 0 {
			wantReply = question
		}
		if m.ReplyTo != wantReply {
			t.Errorf("piece %d replies to %q, want %q", i, m.ReplyTo, wantReply)
		}
		if i == 0 && (m.FailIfNotExists == nil || *m.FailIfNotExists) {
			t.Errorf("the reply must say fail_if_not_exists: false, got %v", m.FailIfNotExists)
		}
		if got := string(m.AllowedMentions); got != `{"parse":[],"replied_user":true}` {
			t.Errorf("piece %d allowed_mentions = %s, want no parsed mentions", i, got)
		}
		joined = append(joined, m.Content)
	}
	if got, want := strings.Join(strings.Fields(strings.Join(joined, " ")), " "), strings.Join(strings.Fields(text), " "); got != want {
		t.Errorf("the pieces do not add up to the text")
	}
}

func TestSend_ThreadIDIsTheTargetChannel(t *testing.T) {
	srv := fakediscord.New(t)
	const thread = "1300000000000000001"
	srv.AddChannel(thread, srv.GuildID)
	a := newAdapter(t, srv)
	_, err := a.Send(t.Context(), moltgate.OutboundMessage{
		ChannelAddress: moltgate.ChannelAddress{Channel: "discord", ChatID: srv.GuildChannelID, ThreadID: thread}, Text: "in the thread",
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if sent := srv.Sent(); len(sent) != 1 || sent[0].ChannelID != thread {
		t.Errorf("sent %+v, want one message in the thread channel", sent)
	}
}

func TestSend_Errors(t *testing.T) {
	tests := []struct {
		name           string
		failure        fakediscord.Failure
		wantRetry      bool
		wantRetryAfter time.Duration
		wantText       string
	}{
		{"429", fakediscord.Failure{Status: 429, RetryAfter: 1500 * time.Millisecond}, true, 1500 * time.Millisecond, "rate limited"},
		{"global 429", fakediscord.Failure{Status: 429, RetryAfter: 2 * time.Second, Global: true}, true, 2 * time.Second, "rate limited"},
		{"500", fakediscord.Failure{Status: 500}, true, 0, "HTTP 500"},
		{"502", fakediscord.Failure{Status: 502}, true, 0, "HTTP 502"},
		{"400", fakediscord.Failure{Status: 400}, false, 0, "Invalid Form Body (HTTP 400, Discord code 50035)"},
		{"403", fakediscord.Failure{Status: 403}, false, 0, "Missing Permissions (HTTP 403, Discord code 50013)"},
		{"blocked DM", fakediscord.Failure{Status: 403, Code: 50007, Message: "Cannot send messages to this user"}, false, 0, "Cannot send messages to this user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakediscord.New(t)
			a := newAdapter(t, srv)
			srv.FailNext(fakediscord.RouteCreateMessage, 1, tt.failure)
			to := moltgate.ChannelAddress{Channel: "discord", ChatID: srv.GuildChannelID}
			ids, err := a.Send(t.Context(), moltgate.OutboundMessage{ChannelAddress: to, Text: "hi"})
			if len(ids) != 0 {
				t.Errorf("ids = %v, want none", ids)
			}
			var d *moltgate.DeliveryError
			if !errors.As(err, &d) {
				t.Fatalf("Send = %v, want a *DeliveryError", err)
			}
			if d.Retryable != tt.wantRetry || d.RetryAfter != tt.wantRetryAfter {
				t.Errorf("retryable %t after %s, want %t after %s (%v)", d.Retryable, d.RetryAfter, tt.wantRetry, tt.wantRetryAfter, err)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
			// disgo did not retry by itself: one request, answered with the failure.
			if n := countPosts(srv); n != 1 {
				t.Errorf("%d POSTs to the messages route, want 1", n)
			}
		})
	}
}

func countPosts(srv *fakediscord.Server) int {
	n := 0
	for _, r := range srv.Requests() {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/messages") {
			n++
		}
	}
	return n
}

func TestSend_UnknownChannelIsNotRetryable(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	_, err := a.Send(t.Context(), moltgate.OutboundMessage{
		ChannelAddress: moltgate.ChannelAddress{Channel: "discord", ChatID: "1234567890"}, Text: "hi",
	})
	d := moltgate.AsDeliveryError(err)
	if err == nil || d.Retryable || !strings.Contains(err.Error(), "Unknown Channel (HTTP 404, Discord code 10003)") {
		t.Errorf("Send = %v (retryable %t), want a final Unknown Channel error", err, d.Retryable)
	}
}

func TestSend_BadInput(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	tests := []struct {
		name string
		msg  moltgate.OutboundMessage
		want string
	}{
		{"empty text", moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: srv.GuildChannelID}, Text: " \n "}, "empty message"},
		{"no chat", moltgate.OutboundMessage{Text: "hi"}, "not a Discord channel id"},
		{"bad chat", moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: "general"}, Text: "hi"}, `"general" is not a Discord channel id`},
		{"bad reply id", moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: srv.GuildChannelID}, Text: "hi", ReplyToID: "abc"}, "not a Discord message id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Send(t.Context(), tt.msg)
			var d *moltgate.DeliveryError
			if !errors.As(err, &d) || d.Retryable || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Send = %v, want a final error containing %q", err, tt.want)
			}
		})
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests reached Discord, want 0", n)
	}
}

func TestSend_NetworkErrorIsRetryable(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv, func(c *discord.Config) { c.APIURL = "http://127.0.0.1:1" })
	_, err := a.Send(t.Context(), moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: srv.GuildChannelID}, Text: "hi"})
	if d := moltgate.AsDeliveryError(err); err == nil || !d.Retryable {
		t.Errorf("Send = %v, want a retryable error", err)
	}
}

// TestSend_PacesToTheRateLimit: with Discord's bucket at 2 messages per
// 300 ms, a 5-piece answer goes out whole and in order, without a 429.
func TestSend_PacesToTheRateLimit(t *testing.T) {
	srv := fakediscord.New(t)
	srv.SetRateLimit(fakediscord.RouteCreateMessage, 2, 300*time.Millisecond)
	a := newAdapter(t, srv)
	to := moltgate.ChannelAddress{Channel: "discord", ChatID: srv.GuildChannelID}
	ids, err := a.Send(t.Context(), moltgate.OutboundMessage{ChannelAddress: to, Text: longText(30)})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(ids) < 5 || len(srv.Sent()) != len(ids) {
		t.Fatalf("%d ids, %d sent; want ≥5 and equal", len(ids), len(srv.Sent()))
	}
	for _, r := range srv.Requests() {
		if r.Status == 429 {
			t.Errorf("a request was rate limited: the pacer did not wait for the bucket")
		}
	}
}

// TestSend_LongRateLimitComesBackToTheCaller: after a 429 that lasts
// longer than the pacer waits, the next Send returns at once with the
// remaining wait instead of blocking or hammering Discord.
func TestSend_LongRateLimitComesBackToTheCaller(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	srv.FailNext(fakediscord.RouteCreateMessage, 1, fakediscord.Failure{Status: 429, RetryAfter: time.Minute})
	msg := moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: srv.GuildChannelID}, Text: "hi"}
	if _, err := a.Send(t.Context(), msg); moltgate.AsDeliveryError(err).RetryAfter != time.Minute {
		t.Fatalf("first Send = %v, want retry after 1m", err)
	}
	_, err := a.Send(t.Context(), msg)
	d := moltgate.AsDeliveryError(err)
	if err == nil || !d.Retryable || d.RetryAfter <= 5*time.Second || d.RetryAfter > time.Minute {
		t.Errorf("second Send = %v (retryable %t, after %s), want retryable after the rest of the minute", err, d.Retryable, d.RetryAfter)
	}
	if n := countPosts(srv); n != 1 {
		t.Errorf("%d POSTs reached Discord, want 1 (the second Send waits for the bucket)", n)
	}
	// Other channels are not held up.
	srv.AddChannel("1300000000000000002", srv.GuildID)
	msg.ChatID = "1300000000000000002"
	if _, err := a.Send(t.Context(), msg); err != nil {
		t.Errorf("Send to another channel: %v", err)
	}
}

func TestTyping(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	to := moltgate.ChannelAddress{Channel: "discord", ChatID: srv.GuildChannelID}
	if err := a.Typing(t.Context(), to); err != nil {
		t.Fatalf("Typing: %v", err)
	}
	if got := srv.Typing(); len(got) != 1 || got[0] != srv.GuildChannelID {
		t.Errorf("typing = %v, want [%s]", got, srv.GuildChannelID)
	}
	srv.FailNext(fakediscord.RouteTyping, 1, fakediscord.Failure{Status: 403})
	if err := a.Typing(t.Context(), to); err == nil || !strings.Contains(err.Error(), "Missing Permissions") {
		t.Errorf("Typing = %v, want Missing Permissions", err)
	}
	if err := a.Typing(t.Context(), moltgate.ChannelAddress{ChatID: "x"}); err == nil {
		t.Errorf("Typing to a bad id succeeded")
	}
}
