package telegram_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/channels/telegram"
	"github.com/moltgate/moltgate/internal/faketelegram"
)

func to(chat faketelegram.Chat, thread int) moltgate.ChannelAddress {
	addr := moltgate.ChannelAddress{Channel: "telegram", ChatID: strconv.FormatInt(chat.ID, 10)}
	if thread != 0 {
		addr.ThreadID = strconv.Itoa(thread)
	}
	return addr
}

func TestSend_SplitsLongText(t *testing.T) {
	fake := faketelegram.New(t)
	a := newAdapter(t, config(fake, nil))
	question := fake.Post(faketelegram.Message{Chat: forum, From: alice, Text: "@moltgate_test_bot write a lot", ThreadID: 42})

	// Paragraphs with emoji (two UTF-16 code units each), Markdown that
	// would not parse, about 11,000 code units in all.
	var paras []string
	for i := range 40 {
		paras = append(paras, fmt.Sprintf("Paragraph %d 🦀 with *unbalanced _markdown and [a link( — ", i)+strings.Repeat("word ", 45))
	}
	text := strings.Join(paras, "\n\n")
	ids, err := a.Send(context.Background(), moltgate.OutboundMessage{ChannelAddress: to(forum, 42), Text: text, ReplyToID: strconv.Itoa(question)})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	sent := fake.Sent()
	if len(sent) < 3 || len(ids) != len(sent) {
		t.Fatalf("sent %d messages with %d ids, want at least 3 and one id each", len(sent), len(ids))
	}
	var joined []string
	for i, m := range sent {
		if n := len(utf16.Encode([]rune(m.Text))); n > 4096 {
			t.Errorf("piece %d is %d UTF-16 code units", i, n)
		}
		if ids[i] != strconv.Itoa(m.MessageID) {
			t.Errorf("id %d is %s, the fake sent %d", i, ids[i], m.MessageID)
		}
		if m.ChatID != forum.ID || m.ThreadID != 42 || m.ParseMode != "" {
			t.Errorf("piece %d went to chat %d thread %d with parse_mode %q", i, m.ChatID, m.ThreadID, m.ParseMode)
		}
		wantReply := 0
		if i == 0 {
			wantReply = question
		}
		if m.ReplyTo != wantReply {
			t.Errorf("piece %d replies to %d, want %d", i, m.ReplyTo, wantReply)
		}
		joined = append(joined, m.Text)
	}
	// In order and nothing lost: the pieces, rejoined at paragraph
	// breaks, are the text.
	if got := strings.Join(strings.Fields(strings.Join(joined, " ")), " "); got != strings.Join(strings.Fields(text), " ") {
		t.Error("the pieces do not add up to the text in order")
	}
}

func TestSend_ReplyToDeletedMessage(t *testing.T) {
	fake := faketelegram.New(t)
	a := newAdapter(t, config(fake, nil))
	fake.DM(alice, "hi")
	// The question is gone (deleted): the answer is still delivered.
	ids, err := a.Send(context.Background(), moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: "1001"}, Text: "answer", ReplyToID: "999999"})
	if err != nil || len(ids) != 1 {
		t.Fatalf("Send: %v %v", ids, err)
	}
}

func TestSend_Errors(t *testing.T) {
	tests := []struct {
		name       string
		failure    *faketelegram.Failure
		chat       string
		retryable  bool
		retryAfter time.Duration
	}{
		{"429", &faketelegram.Failure{Status: 429, RetryAfter: 3}, "1001", true, 3 * time.Second},
		{"500", &faketelegram.Failure{Status: 500}, "1001", true, 0},
		{"502 from a proxy", &faketelegram.Failure{Status: 502, Body: "<html>502 Bad Gateway</html>"}, "1001", true, 0},
		{"dropped connection", &faketelegram.Failure{Drop: true}, "1001", true, 0},
		{"blocked by the user", &faketelegram.Failure{Status: 403, Description: "Forbidden: bot was blocked by the user"}, "1001", false, 0},
		{"chat not found", nil, "777", false, 0},
		{"bad request", &faketelegram.Failure{Status: 400, Description: "Bad Request: can't parse entities"}, "1001", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := faketelegram.New(t)
			a := newAdapter(t, config(fake, nil))
			fake.DM(alice, "hi")
			if tt.failure != nil {
				fake.FailNext("sendMessage", 1, *tt.failure)
			}
			ids, err := a.Send(context.Background(), moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: tt.chat}, Text: "hello"})
			var de *moltgate.DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("Send returned %v (%T), want a *DeliveryError", err, err)
			}
			if len(ids) != 0 || de.Retryable != tt.retryable || de.RetryAfter != tt.retryAfter {
				t.Errorf("ids %v, retryable %v after %s; want retryable %v after %s (%v)", ids, de.Retryable, de.RetryAfter, tt.retryable, tt.retryAfter, err)
			}
			if strings.Contains(err.Error(), fake.Token[strings.IndexByte(fake.Token, ':')+1:]) {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
}

func TestSend_PartialFailure(t *testing.T) {
	fake := faketelegram.New(t)
	a := newAdapter(t, config(fake, nil))
	fake.DM(alice, "hi")
	fake.FailNext("sendMessage", 1, faketelegram.Failure{})            // the first piece goes through
	fake.FailNext("sendMessage", 1, faketelegram.Failure{Status: 500}) // the second fails
	text := strings.Repeat("a sentence of words. ", 500)               // three pieces
	ids, err := a.Send(context.Background(), moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: "1001"}, Text: text})
	var de *moltgate.DeliveryError
	if !errors.As(err, &de) || !de.Retryable || !strings.Contains(err.Error(), "message 2 of 3") {
		t.Fatalf("Send returned %v, want a retryable DeliveryError about message 2 of 3", err)
	}
	sent := fake.Sent()
	if len(sent) != 1 || len(ids) != 1 || ids[0] != strconv.Itoa(sent[0].MessageID) {
		t.Fatalf("ids %v for sent %+v: want the first piece's id", ids, sent)
	}

	// The outbox's next attempt skips the piece delivered: the chat gets
	// each piece once, in order.
	rest, err := a.Send(context.Background(), moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: "1001"}, Text: text, Skip: len(ids)})
	if err != nil {
		t.Fatalf("the retry: %v", err)
	}
	sent = fake.Sent()
	pieces := moltgate.SplitText(text, telegram.MaxMessageLength)
	if len(rest) != len(pieces)-1 || len(sent) != len(pieces) {
		t.Fatalf("the retry sent %d pieces (%d in all), want %d of %d", len(rest), len(sent), len(pieces)-1, len(pieces))
	}
	for i, m := range sent {
		if m.Text != pieces[i] {
			t.Errorf("message %d is %.30q…, want piece %d, %.30q…", i, m.Text, i, pieces[i])
		}
	}
}

func TestSend_BadInput(t *testing.T) {
	fake := faketelegram.New(t)
	a := newAdapter(t, config(fake, nil))
	fake.DM(alice, "hi")
	for _, tt := range []struct {
		name string
		msg  moltgate.OutboundMessage
		want string
	}{
		{"empty text", moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: "1001"}, Text: " \n "}, "text is empty"},
		{"no chat", moltgate.OutboundMessage{Text: "hi"}, "no ChatID"},
		{"bad thread", moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: "1001", ThreadID: "general"}, Text: "hi"}, `ThreadID "general"`},
		{"bad reply", moltgate.OutboundMessage{ChannelAddress: moltgate.ChannelAddress{ChatID: "1001"}, Text: "hi", ReplyToID: "-4"}, `ReplyToID "-4"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Send(context.Background(), tt.msg)
			var de *moltgate.DeliveryError
			if !errors.As(err, &de) || de.Retryable || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want a final DeliveryError mentioning %q", err, tt.want)
			}
		})
	}
	if n := len(fake.RequestsTo("sendMessage")); n != 0 {
		t.Errorf("bad input reached Telegram %d times", n)
	}
}

func TestTyping(t *testing.T) {
	fake := faketelegram.New(t)
	a := newAdapter(t, config(fake, nil))
	fake.Post(faketelegram.Message{Chat: forum, From: alice, Text: "hi", ThreadID: 42})
	if err := a.Typing(context.Background(), to(forum, 42)); err != nil {
		t.Fatal(err)
	}
	want := faketelegram.ChatAction{ChatID: forum.ID, ThreadID: 42, Action: "typing"}
	if got := fake.ChatActions(); len(got) != 1 || got[0] != want {
		t.Errorf("chat actions %+v, want %+v", got, want)
	}
	err := a.Typing(context.Background(), moltgate.ChannelAddress{ChatID: "777"})
	var de *moltgate.DeliveryError
	if !errors.As(err, &de) || de.Retryable || !strings.Contains(err.Error(), "chat not found") {
		t.Errorf("typing in an unknown chat: %v", err)
	}
}
