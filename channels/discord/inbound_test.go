package discord_test

import (
	"errors"
	"testing"
	"time"

	"github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/internal/fakediscord"
)

func TestInbound_DirectMessage(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)
	before := time.Now().Add(-time.Second)
	id := srv.Inject(fakediscord.Inbound{AuthorID: "4242", AuthorName: "alice", GlobalName: "Alice A.", Content: "hello bot"})

	got := r.next(t)
	want := moltgate.InboundMessage{
		ChannelAddress: moltgate.ChannelAddress{Channel: "discord", AccountID: srv.BotID, ChatID: srv.DMChannel("4242")},
		MessageID:      id,
		SenderID:       "4242",
		SenderName:     "Alice A.",
		Text:           "hello bot",
		Direct:         true,
	}
	sentAt := got.SentAt
	got.SentAt = time.Time{}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if sentAt.Before(before) || sentAt.After(time.Now()) {
		t.Errorf("SentAt = %v, want the message's timestamp", sentAt)
	}
}

func TestInbound_GuildMessages(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)
	mention := srv.Mention()
	legacy := "<@!" + srv.BotID + ">"

	tests := []struct {
		name          string
		in            fakediscord.Inbound
		wantText      string
		wantMentioned bool
		wantName      string
	}{
		{"no mention", fakediscord.Inbound{Content: "just chatting"}, "just chatting", false, "bob"},
		{"mention first", fakediscord.Inbound{Content: mention + " what's the weather?"}, "what's the weather?", true, "bob"},
		{"mention inside", fakediscord.Inbound{Content: "hey " + mention + " there"}, "hey there", true, "bob"},
		{"legacy nick mention", fakediscord.Inbound{Content: legacy + " hi"}, "hi", true, "bob"},
		{"other user mentioned", fakediscord.Inbound{Content: "<@999> look"}, "<@999> look", false, "bob"},
		{"nickname", fakediscord.Inbound{Content: "hi all", Nick: "Bobby"}, "hi all", false, "Bobby"},
		{"bare mention", fakediscord.Inbound{Content: mention}, "", true, "bob"},
	}
	for _, tt := range tests { // no subtests: srv.Inject fails the test srv was made for
		in := tt.in
		in.GuildID, in.AuthorID, in.AuthorName = srv.GuildID, "777", "bob"
		id := srv.Inject(in)
		got := r.next(t)
		if got.MessageID != id || got.ChatID != srv.GuildChannelID || got.SenderID != "777" || got.Direct {
			t.Errorf("%s: got %+v, want message %s in guild channel %s from 777, not direct", tt.name, got, id, srv.GuildChannelID)
		}
		if got.Text != tt.wantText || got.Mentioned != tt.wantMentioned || got.SenderName != tt.wantName {
			t.Errorf("%s: text %q mentioned %t name %q; want %q %t %q", tt.name, got.Text, got.Mentioned, got.SenderName, tt.wantText, tt.wantMentioned, tt.wantName)
		}
	}
}

func TestInbound_ReplyToBotCountsAsMention(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)
	ids, err := a.Send(t.Context(), moltgate.OutboundMessage{
		ChannelAddress: moltgate.ChannelAddress{Channel: "discord", ChatID: srv.GuildChannelID}, Text: "I am the bot",
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	other := srv.GuildMessage("555", "carol", "a message by carol")
	r.next(t)

	// A reply to the bot with the reply's @ turned off still addresses it.
	srv.Inject(fakediscord.Inbound{GuildID: srv.GuildID, AuthorID: "777", AuthorName: "bob", Content: "thanks", ReplyTo: ids[0]})
	got := r.next(t)
	if !got.Mentioned || got.ReplyToID != ids[0] || got.Text != "thanks" {
		t.Errorf("reply to the bot: %+v, want Mentioned, ReplyToID %s", got, ids[0])
	}
	// A reply to someone else does not.
	srv.Inject(fakediscord.Inbound{GuildID: srv.GuildID, AuthorID: "777", AuthorName: "bob", Content: "agreed", ReplyTo: other, ReplyMention: true})
	got = r.next(t)
	if got.Mentioned || got.ReplyToID != other {
		t.Errorf("reply to carol: %+v, want not Mentioned, ReplyToID %s", got, other)
	}
}

func TestInbound_AttachmentOnly(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)
	id := srv.Inject(fakediscord.Inbound{AuthorID: "4242", AuthorName: "alice", Attachments: 2, Stickers: 1})
	got := r.next(t)
	if got.MessageID != id || got.Text != "" || got.Attachments != 3 || !got.Direct {
		t.Errorf("got %+v, want message %s with no text and 3 attachments", got, id)
	}
}

func TestInbound_SkipsBotsSystemAndMalformed(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)

	srv.Inject(fakediscord.Inbound{AuthorID: "900", AuthorName: "otherbot", Bot: true, Content: "beep"})
	srv.Inject(fakediscord.Inbound{AuthorID: srv.BotID, AuthorName: srv.BotName, Bot: true, Content: "my own echo"})
	srv.Inject(fakediscord.Inbound{GuildID: srv.GuildID, AuthorID: "777", AuthorName: "bob", Type: 7}) // "bob joined"
	srv.InjectMalformed()
	srv.InjectRaw("MESSAGE_CREATE", []byte(`"not an object"`))
	srv.InjectRaw("TYPING_START", []byte(`{"channel_id":"1","user_id":"2","timestamp":1}`))
	srv.DM("4242", "alice", "still listening?")

	if got := r.next(t); got.Text != "still listening?" {
		t.Fatalf("next message = %+v, want alice's (bots, system and malformed messages skipped)", got)
	}
	if st := a.Status(); st.State != moltgate.ChannelRunning || st.Reconnects != 0 {
		t.Errorf("status = %+v, want running without reconnects", st)
	}
}

func TestInbound_HandlerErrorDoesNotStopTheLoop(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)
	r.mu.Lock()
	r.failWith = errors.New("event log unavailable")
	r.mu.Unlock()
	srv.DM("4242", "alice", "one")
	r.next(t)
	r.mu.Lock()
	r.failWith = nil
	r.mu.Unlock()
	srv.DM("4242", "alice", "two")
	if got := r.next(t); got.Text != "two" {
		t.Errorf("got %q, want two", got.Text)
	}
	if st := a.Status(); st.State != moltgate.ChannelRunning {
		t.Errorf("state = %q", st.State)
	}
}
