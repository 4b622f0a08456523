package channels

import (
	"context"
	"slices"
	"sync"
	"testing"

	moltgate "github.com/moltgate/moltgate"
)

// writeSide records what the router asks of the chat and access services,
// and answers the allowlist; the router uses no other method.
type writeSide struct {
	moltgate.ChatService
	moltgate.ChannelAccessService
	moltgate.ChannelQueries

	mu       sync.Mutex
	runs     []moltgate.RunRequest
	pairings []string // senders given a code
	approved []string // senders on the allowlist
}

func (w *writeSide) SendMessage(_ context.Context, req moltgate.RunRequest, _ moltgate.Meta) (moltgate.RunReceipt, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.runs = append(w.runs, req)
	return moltgate.RunReceipt{RunID: "run", State: "queued"}, nil
}

func (w *writeSide) RequestChannelPairing(_ context.Context, _, senderID, _ string, _ *moltgate.ChannelAddress, _ moltgate.Meta) (string, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pairings = append(w.pairings, senderID)
	return "ABCD1234", true, nil
}

func (w *writeSide) Allowed(_, senderID string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(w.approved, senderID)
}

func TestRouter_Handle(t *testing.T) {
	const owner, approved, stranger = "owner", "approved", "stranger"
	dm := func(from string) moltgate.InboundMessage {
		return moltgate.InboundMessage{ChannelAddress: moltgate.ChannelAddress{Channel: "telegram", ChatID: "c-" + from}, MessageID: "1", SenderID: from, Text: "hi", Direct: true}
	}
	group := func(from string, mentioned bool) moltgate.InboundMessage {
		return moltgate.InboundMessage{ChannelAddress: moltgate.ChannelAddress{Channel: "telegram", ChatID: "-100"}, MessageID: "2", SenderID: from, Text: "hi all", Mentioned: mentioned}
	}
	type want struct {
		run, pairing bool
		session      string
	}
	for _, tc := range []struct {
		name           string
		policy         string
		requireMention bool
		msg            moltgate.InboundMessage
		want           want
	}{
		{"pairing: the owner's DM", moltgate.DMPairing, true, dm(owner), want{run: true, session: moltgate.MainSessionKey}},
		{"pairing: an approved sender's DM", moltgate.DMPairing, true, dm(approved), want{run: true, session: "agent:main:telegram:dm:approved"}},
		{"pairing: a stranger's DM gets a code", moltgate.DMPairing, true, dm(stranger), want{pairing: true}},
		{"allowlist: a stranger's DM is ignored", moltgate.DMAllowlist, true, dm(stranger), want{}},
		{"allowlist: an approved sender's DM", moltgate.DMAllowlist, true, dm(approved), want{run: true, session: "agent:main:telegram:dm:approved"}},
		{"open: a stranger's DM", moltgate.DMOpen, true, dm(stranger), want{run: true, session: "agent:main:telegram:dm:stranger"}},
		{"disabled: the owner's DM is ignored", moltgate.DMDisabled, true, dm(owner), want{}},
		{"disabled: groups still work", moltgate.DMDisabled, true, group(owner, true), want{run: true, session: "agent:main:telegram:group:-100"}},
		{"a group message without a mention is ignored", moltgate.DMPairing, true, group(owner, false), want{}},
		{"unless mentions are not required", moltgate.DMPairing, false, group(owner, false), want{run: true, session: "agent:main:telegram:group:-100"}},
		{"a stranger in a group gets no code", moltgate.DMPairing, true, group(stranger, true), want{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &writeSide{approved: []string{approved}}
			s := Settings{Channel: "telegram", Enabled: true, DMPolicy: tc.policy, AllowFrom: []string{owner}, RequireMention: tc.requireMention}
			r := &Router{
				Chat:            w,
				Access:          w,
				Queries:         w,
				ChannelSettings: func(name string) (Settings, bool) { return s, name == "telegram" },
				DMScope:         func() string { return "" },
				Channel:         func(string) moltgate.Channel { return nil },
				Active:          func(string) []string { return nil },
			}
			if err := r.Handle(context.Background(), tc.msg); err != nil {
				t.Fatal(err)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if got := len(w.runs) == 1; got != tc.want.run {
				t.Fatalf("runs %+v, want a run: %v", w.runs, tc.want.run)
			}
			if tc.want.run && w.runs[0].SessionKey != tc.want.session {
				t.Errorf("session %q, want %q", w.runs[0].SessionKey, tc.want.session)
			}
			if got := len(w.pairings) == 1; got != tc.want.pairing {
				t.Errorf("pairing codes for %v, want one: %v", w.pairings, tc.want.pairing)
			}
		})
	}
}

// A message for a channel the settings do not enable is dropped, and the
// settings are asked at each message: enabling a channel takes effect at
// its next one.
func TestRouter_DropsDisabledChannels(t *testing.T) {
	w := &writeSide{}
	enabled := true
	r := &Router{
		Chat: w, Access: w, Queries: w,
		ChannelSettings: func(name string) (Settings, bool) {
			s := Settings{Channel: name, Enabled: enabled && name == "telegram", DMPolicy: moltgate.DMOpen}
			return s, s.Enabled
		},
		DMScope: func() string { return "" }, Channel: func(string) moltgate.Channel { return nil }, Active: func(string) []string { return nil },
	}
	msg := moltgate.InboundMessage{ChannelAddress: moltgate.ChannelAddress{Channel: "telegram", ChatID: "1"}, MessageID: "1", SenderID: "x", Text: "hi", Direct: true}
	for _, on := range []bool{false, true} {
		enabled = on
		if err := r.Handle(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	msg.Channel = "discord" // not in the settings at all
	if err := r.Handle(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	if len(w.runs) != 1 {
		t.Fatalf("%d runs, want only the one from the enabled channel", len(w.runs))
	}
}
