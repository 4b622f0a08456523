package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/commands"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/projections"
	"github.com/moltgate/moltgate/secrets"
)

// queue is a RunQueue that records what it was given.
type queue struct {
	mu     sync.Mutex
	runs   map[string]string // run → session
	refuse bool
}

func (q *queue) Enqueue(run moltgate.QueuedRun) error {
	sessionKey, runID := run.SessionKey, run.RunID
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.refuse {
		return moltgate.Errorf(moltgate.EUNAVAILABLE, "the agent is restarting")
	}
	if q.runs == nil {
		q.runs = map[string]string{}
	}
	q.runs[runID] = sessionKey
	return nil
}

func (q *queue) Active(sessionKey string) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for r, s := range q.runs {
		if s == sessionKey {
			out = append(out, r)
		}
	}
	return out
}

func (q *queue) forget() { q.mu.Lock(); q.runs = nil; q.mu.Unlock() }

// MustOpenService opens a log, its read models and the service over them,
// with a sealing key, an environment and a run queue.
func MustOpenService(tb testing.TB) (*commands.Service, *queue) {
	tb.Helper()
	l := eventlog.NewLog(filepath.Join(tb.TempDir(), "moltgate.db"))
	if err := l.Open(); err != nil {
		tb.Fatal(err)
	}
	set := projections.NewSet()
	r := projections.NewRunner(l, set.All()...)
	if _, err := r.RunToEnd(context.Background()); err != nil {
		tb.Fatal(err)
	}
	r.Start(context.Background())
	tb.Cleanup(func() { r.Close(); l.Close(context.Background()) })
	s := commands.New(l, r, set)
	key, _ := secrets.ParseKey(strings.Repeat("11", 32))
	s.Sealer, _ = secrets.NewSealer(key)
	env := map[string]string{"DEEPSEEK_API_KEY": "dk"}
	s.Getenv = func(k string) string { return env[k] }
	q := &queue{}
	s.Runs = q
	return s, q
}

var owner = moltgate.Meta{Actor: "owner@example.com", Source: moltgate.SourceUI}

func count(tb testing.TB, s *commands.Service, typ, contains string) int {
	tb.Helper()
	events, err := s.Log.Query(context.Background(), eventlog.Filter{TypePrefix: typ})
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, e := range events {
		if strings.Contains(string(e.Data), contains) {
			n++
		}
	}
	return n
}

func TestDevices(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	req := moltgate.Device{DeviceID: "dev1", PublicKey: "pk1", Role: "operator", Scopes: []string{"operator.read"}}
	id, created, err := s.RequestPairing(ctx, req, moltgate.Meta{Source: moltgate.SourceWS})
	if err != nil || !created {
		t.Fatalf("RequestPairing = %s %v %v", id, created, err)
	}
	// The client reconnects while waiting: same request, and no new event.
	again, created, err := s.RequestPairing(ctx, req, moltgate.Meta{})
	if err != nil || created || again != id {
		t.Fatalf("second request = %s %v %v, want %s reused", again, created, err, id)
	}
	if n := count(t, s, moltgate.EventDevicePairingRequested, ""); n != 1 {
		t.Fatalf("a waiting device appended %d requests, want 1", n)
	}
	if _, err := s.ApprovePairing(ctx, "nope", moltgate.OwnerScopes, owner); moltgate.ErrorCode(err) != moltgate.ENOTFOUND {
		t.Fatalf("approve unknown = %v", err)
	}
	dev, err := s.ApprovePairing(ctx, id, moltgate.OwnerScopes, owner)
	if err != nil || dev.DeviceID != "dev1" || dev.State != moltgate.DevicePaired {
		t.Fatalf("approve = %+v %v", dev, err)
	}
	if dev, err := s.ApprovePairing(ctx, id, moltgate.OwnerScopes, owner); err != nil || dev.DeviceID != "dev1" {
		t.Fatalf("double approval = %+v %v, want idempotent", dev, err)
	}
	if _, err := s.RejectPairing(ctx, id, "", owner); moltgate.ErrorCode(err) != moltgate.ECONFLICT {
		t.Fatalf("reject after approve = %v, want conflict", err)
	}
	token, err := s.IssueToken(ctx, "dev1", owner)
	if err != nil || len(token) < 40 {
		t.Fatalf("IssueToken = %q %v", token, err)
	}
	paired, _ := s.Models.Devices.Device("dev1")
	if paired.TokenHash != commands.HashToken(token) {
		t.Fatal("the stored hash does not match the issued token")
	}
	if n := count(t, s, "", token); n != 0 {
		t.Fatal("the device token is in the log")
	}
	if err := s.RevokeToken(ctx, "dev1", owner); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Models.Devices.Device("dev1"); p.TokenHash != "" {
		t.Fatal("token not revoked")
	}
	if err := s.RemoveDevice(ctx, "dev1", "lost", owner); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveDevice(ctx, "dev1", "", owner); moltgate.ErrorCode(err) != moltgate.ENOTFOUND {
		t.Fatalf("remove twice = %v", err)
	}

	id2, _, _ := s.RequestPairing(ctx, moltgate.Device{DeviceID: "dev2", PublicKey: "pk2", Role: "operator"}, moltgate.Meta{})
	if _, err := s.RejectPairing(ctx, id2, "unknown device", owner); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RejectPairing(ctx, id2, "again", owner); err != nil {
		t.Fatalf("double rejection = %v, want idempotent", err)
	}
	if _, err := s.ApprovePairing(ctx, id2, moltgate.OwnerScopes, owner); moltgate.ErrorCode(err) != moltgate.ECONFLICT || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("approve after reject = %v", err)
	}
}

func TestDevices_ExpiryAndRenewal(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	now := time.Now()
	s.Now = func() time.Time { return now }
	req := moltgate.Device{DeviceID: "d", PublicKey: "p", Role: "operator"}
	id, _, _ := s.RequestPairing(ctx, req, moltgate.Meta{})
	// Past half its life, a reconnect renews the request (one event).
	now = now.Add(commands.DefaultPairingTTL/2 + time.Second)
	if again, created, err := s.RequestPairing(ctx, req, moltgate.Meta{}); err != nil || created || again != id {
		t.Fatalf("renewal = %s %v %v", again, created, err)
	}
	if n := count(t, s, moltgate.EventDevicePairingRequested, ""); n != 2 {
		t.Fatalf("%d request events, want 2 (one renewal)", n)
	}
	now = now.Add(commands.DefaultPairingTTL + time.Second)
	if _, err := s.ApprovePairing(ctx, id, moltgate.OwnerScopes, owner); moltgate.ErrorCode(err) != moltgate.ENOTFOUND || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("approve expired = %v", err)
	}
}

func TestDevices_Limits(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	long := moltgate.Device{DeviceID: "d", PublicKey: "p", Role: "operator", DisplayName: strings.Repeat("x", commands.MaxDeviceField+1)}
	if _, _, err := s.RequestPairing(ctx, long, moltgate.Meta{}); moltgate.ErrorCode(err) != moltgate.EINVALID || !strings.Contains(err.Error(), "displayName") {
		t.Fatalf("long name = %v", err)
	}
	many := moltgate.Device{DeviceID: "d", PublicKey: "p", Role: "operator", Scopes: make([]string, commands.MaxScopes+1)}
	if _, _, err := s.RequestPairing(ctx, many, moltgate.Meta{}); moltgate.ErrorCode(err) != moltgate.EINVALID {
		t.Fatalf("too many scopes = %v", err)
	}
	for i := 0; i < commands.MaxPendingDevices; i++ {
		if _, _, err := s.RequestPairing(ctx, moltgate.Device{DeviceID: "dev" + string(rune('A'+i)), PublicKey: "p", Role: "operator"}, moltgate.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.RequestPairing(ctx, moltgate.Device{DeviceID: "one-too-many", PublicKey: "p", Role: "operator"}, moltgate.Meta{}); moltgate.ErrorCode(err) != moltgate.EUNAVAILABLE {
		t.Fatalf("request over the limit = %v", err)
	}
}

// A device may grant only scopes it holds itself (OpenClaw's rule).
func TestDevices_GrantOnlyHeldScopes(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	admin, _, _ := s.RequestPairing(ctx, moltgate.Device{DeviceID: "a", PublicKey: "p", Role: "operator", Scopes: []string{moltgate.ScopeAdmin}}, moltgate.Meta{})
	_, err := s.ApprovePairing(ctx, admin, []string{moltgate.ScopePairing}, owner)
	if moltgate.ErrorCode(err) != moltgate.EFORBIDDEN || !strings.Contains(err.Error(), moltgate.ScopeAdmin) {
		t.Fatalf("pairing-only approver granted admin: %v", err)
	}
	reader, _, _ := s.RequestPairing(ctx, moltgate.Device{DeviceID: "r", PublicKey: "p", Role: "operator", Scopes: []string{moltgate.ScopeRead}}, moltgate.Meta{})
	if _, err := s.ApprovePairing(ctx, reader, []string{moltgate.ScopePairing, moltgate.ScopeWrite}, owner); err != nil {
		t.Fatalf("write holder granting read: %v", err)
	}
	if _, err := s.ApprovePairing(ctx, admin, moltgate.OwnerScopes, owner); err != nil {
		t.Fatalf("owner granting admin: %v", err)
	}
}

// inParallel runs fn n times at once and waits for all.
func inParallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); <-start; fn(i) }()
	}
	close(start)
	wg.Wait()
}

func TestConcurrent_ApproveAndRejectOneRequest(t *testing.T) {
	for round := 0; round < 5; round++ {
		s, _ := MustOpenService(t)
		ctx := context.Background()
		id, _, _ := s.RequestPairing(ctx, moltgate.Device{DeviceID: "d", PublicKey: "p", Role: "operator"}, moltgate.Meta{})
		var mu sync.Mutex
		okApprove, okReject, conflicts := 0, 0, 0
		inParallel(16, func(i int) {
			var err error
			if i%2 == 0 {
				_, err = s.ApprovePairing(ctx, id, moltgate.OwnerScopes, owner)
			} else {
				_, err = s.RejectPairing(ctx, id, "", owner)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && i%2 == 0:
				okApprove++
			case err == nil:
				okReject++
			case moltgate.ErrorCode(err) == moltgate.ECONFLICT:
				conflicts++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		})
		decisions := count(t, s, moltgate.EventDevicePairingApproved, id) + count(t, s, moltgate.EventDevicePairingRejected, id)
		if decisions != 1 {
			t.Fatalf("round %d: %d decisions recorded, want exactly 1", round, decisions)
		}
		if (okApprove > 0) == (okReject > 0) || okApprove+okReject+conflicts != 16 {
			t.Fatalf("round %d: approve ok %d, reject ok %d, conflicts %d: both sides won or answers are missing", round, okApprove, okReject, conflicts)
		}
		if (okApprove > 0 && okApprove != 8) || (okReject > 0 && okReject != 8) {
			t.Fatalf("round %d: the winning side's repeats were not idempotent: %d/%d", round, okApprove, okReject)
		}
	}
}

func TestConcurrent_ConfigWithOneBaseHash(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	first, err := s.ApplyConfig(ctx, json.RawMessage(`{"agents":{}}`), "", owner)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	wins, conflicts := 0, 0
	inParallel(8, func(i int) {
		doc := json.RawMessage(`{"agents":{"defaults":{"model":{"primary":"openai/gpt-` + string(rune('a'+i)) + `"}}}}`)
		_, err := s.ApplyConfig(ctx, doc, first.Hash, owner)
		mu.Lock()
		defer mu.Unlock()
		switch moltgate.ErrorCode(err) {
		case "":
			wins++
		case moltgate.ECONFLICT:
			conflicts++
		default:
			t.Errorf("unexpected: %v", err)
		}
	})
	if wins != 1 || conflicts != 7 {
		t.Fatalf("%d applies won and %d conflicted, want 1 and 7 (a lost update otherwise)", wins, conflicts)
	}
	if n := count(t, s, moltgate.EventConfigApplied, ""); n != 2 {
		t.Fatalf("%d config versions, want 2", n)
	}
}

func TestConcurrent_ChannelPairing(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	// A flood from one stranger: one code, one event.
	codes := make([]string, 20)
	inParallel(20, func(i int) {
		code, _, err := s.RequestChannelPairing(ctx, "telegram", "42", "Eve", nil, moltgate.Meta{})
		if err != nil {
			t.Error(err)
		}
		codes[i] = code
	})
	for _, c := range codes {
		if c != codes[0] || len(c) != 8 {
			t.Fatalf("codes = %v, want one 8-character code", codes)
		}
	}
	if n := count(t, s, moltgate.EventChannelPairingRequested, ""); n != 1 {
		t.Fatalf("%d pairing events for one sender", n)
	}
	// Many strangers at once: at most 3 pending per channel.
	var mu sync.Mutex
	refused := 0
	inParallel(10, func(i int) {
		_, _, err := s.RequestChannelPairing(ctx, "telegram", "sender-"+string(rune('a'+i)), "", nil, moltgate.Meta{})
		if moltgate.ErrorCode(err) == moltgate.EUNAVAILABLE {
			mu.Lock()
			refused++
			mu.Unlock()
		} else if err != nil {
			t.Error(err)
		}
	})
	if p := s.Models.Channels.Pending("telegram", time.Now()); len(p) != commands.MaxPendingPerChannel || refused != 8 {
		t.Fatalf("%d pending, %d refused; want %d pending", len(p), refused, commands.MaxPendingPerChannel)
	}
	// Approve and reject one code at once: one decision; the winning
	// side's repeats answer with it, the other side gets a conflict.
	okApprove, okReject := 0, 0
	inParallel(10, func(i int) {
		var err error
		if i%2 == 0 {
			_, err = s.ApproveChannelPairing(ctx, "telegram", strings.ToLower(codes[0]), true, owner)
		} else {
			_, err = s.RejectChannelPairing(ctx, "telegram", codes[0], owner)
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil && i%2 == 0:
			okApprove++
		case err == nil:
			okReject++
		case moltgate.ErrorCode(err) != moltgate.ECONFLICT:
			t.Error(err)
		}
	})
	if n := count(t, s, moltgate.EventChannelPairingApproved, codes[0]) + count(t, s, moltgate.EventChannelPairingRejected, codes[0]); n != 1 {
		t.Fatalf("%d decisions for one code", n)
	}
	if !(okApprove == 5 && okReject == 0 || okApprove == 0 && okReject == 5) {
		t.Fatalf("approve ok %d, reject ok %d: want the winning side's 5 calls to succeed and the other side's 5 to conflict", okApprove, okReject)
	}
	if s.Models.Channels.Allowed("telegram", "42") != (okApprove == 5) {
		t.Fatal("the allowlist disagrees with the decision")
	}
}

func TestChannelPairing_Input(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	for _, bad := range []struct{ channel, sender string }{{"irc", "42"}, {"telegram", ""}, {"telegram", "   "}, {"telegram", strings.Repeat("1", 201)}} {
		if _, _, err := s.RequestChannelPairing(ctx, bad.channel, bad.sender, "x", nil, moltgate.Meta{}); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("RequestChannelPairing(%q, %.20q) = %v", bad.channel, bad.sender, err)
		}
	}
	if _, err := s.ApproveChannelPairing(ctx, "irc", "ABCDEFGH", true, owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
		t.Errorf("approve on an unknown channel = %v", err)
	}
	if _, err := s.ApproveChannelPairing(ctx, "telegram", "ABCDEFGH", true, owner); moltgate.ErrorCode(err) != moltgate.ENOTFOUND {
		t.Errorf("approve an unknown code = %v", err)
	}
	// A stranger's chosen name is cut to size.
	code, _, err := s.RequestChannelPairing(ctx, "telegram", "42", strings.Repeat("é", commands.MaxDeviceField+10), nil, moltgate.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Models.Channels.PendingCode("telegram", code); len([]rune(p.SenderName)) != commands.MaxDeviceField {
		t.Fatalf("sender name of %d characters kept", len([]rune(p.SenderName)))
	}
}

func TestChannelPairing_Expiry(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	now := time.Now()
	s.Now = func() time.Time { return now }
	old, _, err := s.RequestChannelPairing(ctx, "telegram", "42", "", nil, moltgate.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < commands.MaxPendingPerChannel-1; i++ {
		if _, _, err := s.RequestChannelPairing(ctx, "telegram", fmt.Sprint("other", i), "", nil, moltgate.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(commands.ChannelPairingTTL + time.Second)
	if _, err := s.ApproveChannelPairing(ctx, "telegram", old, true, owner); moltgate.ErrorCode(err) != moltgate.ENOTFOUND || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("approve an expired code = %v", err)
	}
	// Expired codes hold no place in the queue, and the sender gets a new one.
	code, created, err := s.RequestChannelPairing(ctx, "telegram", "42", "", nil, moltgate.Meta{})
	if err != nil || !created || code == old {
		t.Fatalf("request after expiry = %s %v %v, want a new code", code, created, err)
	}
	if _, err := s.ApproveChannelPairing(ctx, "telegram", code, true, owner); err != nil || !s.Models.Channels.Allowed("telegram", "42") {
		t.Fatalf("approve the new code = %v", err)
	}
}

func TestChangeAllowlist(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	for name, bad := range map[string]struct {
		channel     string
		add, remove []string
	}{
		"nothing":         {"telegram", nil, nil},
		"too many":        {"telegram", many[:600], many[600:]},
		"empty id":        {"telegram", []string{"1", " "}, nil},
		"long id":         {"telegram", nil, []string{strings.Repeat("1", 201)}},
		"unknown channel": {"irc", []string{"1"}, nil},
	} {
		if err := s.ChangeAllowlist(ctx, bad.channel, bad.add, bad.remove, owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := count(t, s, moltgate.EventChannelAllowlistChanged, ""); n != 0 {
		t.Fatalf("refused changes appended %d events", n)
	}
	if err := s.ChangeAllowlist(ctx, "discord", []string{"1", "2"}, nil, owner); err != nil {
		t.Fatal(err)
	}
	if err := s.ChangeAllowlist(ctx, "discord", []string{"3"}, []string{"1"}, owner); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Models.Channels.Allowlist("discord"), ","); got != "2,3" {
		t.Fatalf("allowlist = %s", got)
	}
}

// Allowlist changes racing a pairing decision on the same channel stream:
// every change lands, and the code is still decided once.
func TestConcurrent_AllowlistAndPairing(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	code, _, err := s.RequestChannelPairing(ctx, "slack", "U42", "", nil, moltgate.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	okApprove, okReject := 0, 0
	inParallel(12, func(i int) {
		var err error
		switch i % 3 {
		case 0:
			_, err = s.ApproveChannelPairing(ctx, "slack", code, false, owner)
		case 1:
			_, err = s.RejectChannelPairing(ctx, "slack", code, owner)
		default:
			err = s.ChangeAllowlist(ctx, "slack", []string{fmt.Sprint("U", i)}, nil, owner)
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil && i%3 == 0:
			okApprove++
		case err == nil && i%3 == 1:
			okReject++
		case err != nil && (i%3 == 2 || moltgate.ErrorCode(err) != moltgate.ECONFLICT):
			t.Error(err)
		}
	})
	if n := count(t, s, moltgate.EventChannelPairingApproved, code) + count(t, s, moltgate.EventChannelPairingRejected, code); n != 1 {
		t.Fatalf("%d decisions for one code", n)
	}
	if !(okApprove == 4 && okReject == 0 || okApprove == 0 && okReject == 4) {
		t.Fatalf("approve ok %d, reject ok %d", okApprove, okReject)
	}
	want := 4
	if okApprove > 0 {
		want++ // the approved sender
	}
	if got := s.Models.Channels.Allowlist("slack"); len(got) != want || s.Models.Channels.Allowed("slack", "U42") != (okApprove > 0) {
		t.Fatalf("allowlist = %v", got)
	}
}

func TestConcurrent_Sessions(t *testing.T) {
	s, q := MustOpenService(t)
	ctx := context.Background()
	// One send retried from many goroutines: one run.
	receipts := make([]moltgate.RunReceipt, 16)
	inParallel(16, func(i int) {
		r, err := s.SendMessage(ctx, moltgate.RunRequest{SessionKey: "main", Message: "hi", IdempotencyKey: "k1"}, owner)
		if err != nil {
			t.Error(err)
		}
		receipts[i] = r
	})
	created := 0
	for _, r := range receipts {
		if r.RunID != receipts[0].RunID {
			t.Fatalf("two runs for one idempotency key: %v", receipts)
		}
		if r.Created {
			created++
		}
	}
	if created != 1 || count(t, s, moltgate.EventChatRunStarted, "") != 1 || len(q.Active("main")) != 1 {
		t.Fatalf("created %d, %d run events, queue %v", created, count(t, s, moltgate.EventChatRunStarted, ""), q.Active("main"))
	}
	// The end of a run recorded from many goroutines: once.
	run := receipts[0].RunID
	inParallel(8, func(i int) {
		reply := &moltgate.ChatMessage{Content: "hello", Model: "echo/echo"}
		if err := s.FinishRun(ctx, "main", run, reply, moltgate.RunCompleted, "", owner); err != nil {
			t.Error(err)
		}
	})
	if n, m := count(t, s, moltgate.EventChatRunFinished, run), count(t, s, moltgate.EventChatMessageAdded, `"assistant"`); n != 1 || m != 1 {
		t.Fatalf("%d finishes and %d replies for one run", n, m)
	}
	// Sends and resets racing in many sessions all land.
	inParallel(24, func(i int) {
		key := "s" + string(rune('a'+i%4))
		if i%3 == 0 {
			if _, err := s.ResetSession(ctx, key, owner); err != nil {
				t.Error(err)
			}
			return
		}
		if _, err := s.SendMessage(ctx, moltgate.RunRequest{SessionKey: key, Message: "x"}, owner); err != nil {
			t.Error(err)
		}
	})
	if n := count(t, s, moltgate.EventChatRunStarted, ""); n != 1+16 {
		t.Fatalf("%d runs, want 17", n)
	}
}

func TestSendMessage_NeverStrandsARun(t *testing.T) {
	s, q := MustOpenService(t)
	ctx := context.Background()
	// The agent refuses (it is stopping): the run is recorded as not started.
	q.refuse = true
	_, err := s.SendMessage(ctx, moltgate.RunRequest{SessionKey: "main", Message: "hi", IdempotencyKey: "k1"}, owner)
	if moltgate.ErrorCode(err) != moltgate.EUNAVAILABLE {
		t.Fatalf("send while refused = %v", err)
	}
	sess, _ := s.Models.Sessions.Get("main")
	if len(sess.OpenRuns) != 0 || sess.LastRunState != moltgate.RunAborted || !strings.Contains(sess.LastRunError, "not started") {
		t.Fatalf("session after a refused run = %+v", sess)
	}
	q.refuse = false
	r, err := s.SendMessage(ctx, moltgate.RunRequest{SessionKey: "main", Message: "hi", IdempotencyKey: "k1"}, owner)
	if err != nil || r.Created || r.State != moltgate.RunAborted {
		t.Fatalf("retry of a run that did not start = %+v %v, want its state reported", r, err)
	}

	// The enqueue is lost (the agent restarted in between): a retry queues it again.
	r1, err := s.SendMessage(ctx, moltgate.RunRequest{SessionKey: "main", Message: "again", IdempotencyKey: "k2"}, owner)
	if err != nil {
		t.Fatal(err)
	}
	q.forget()
	r2, err := s.SendMessage(ctx, moltgate.RunRequest{SessionKey: "main", Message: "again", IdempotencyKey: "k2"}, owner)
	if err != nil || r2.RunID != r1.RunID || r2.Created || r2.State != "queued" || len(q.Active("main")) != 1 {
		t.Fatalf("retry = %+v %v, queue %v: the run was not resumed", r2, err, q.Active("main"))
	}
}

func TestRecoverRuns(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	r, _ := s.SendMessage(ctx, moltgate.RunRequest{SessionKey: "main", Message: "hi"}, owner)
	if n, err := s.RecoverRuns(ctx); err != nil || n != 1 {
		t.Fatalf("RecoverRuns = %d %v", n, err)
	}
	sess, _ := s.Models.Sessions.Get("main")
	if len(sess.OpenRuns) != 0 || sess.LastRunID != r.RunID || sess.LastRunState != moltgate.RunInterrupted || sess.LastRunError != commands.InterruptedMessage {
		t.Fatalf("session = %+v", sess)
	}
	if n, _ := s.RecoverRuns(ctx); n != 0 {
		t.Fatalf("second recovery closed %d runs", n)
	}
	// The agent finishing late changes nothing.
	if err := s.FinishRun(ctx, "main", r.RunID, nil, moltgate.RunCompleted, "", owner); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, moltgate.EventChatRunFinished, ""); n != 1 {
		t.Fatalf("%d finishes", n)
	}
}

func TestChat(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	r, err := s.SendMessage(ctx, moltgate.RunRequest{SessionKey: "main", Message: "hi", IdempotencyKey: "k1"}, owner)
	if err != nil || !r.Created || r.State != "queued" {
		t.Fatal(r, err)
	}
	if err := s.FinishRun(ctx, "main", r.RunID, &moltgate.ChatMessage{Content: "hello", Model: "echo/echo"}, moltgate.RunCompleted, "", owner); err != nil {
		t.Fatal(err)
	}
	msgs, err := s.Transcript(ctx, "main", 0)
	if err != nil || len(msgs) != 2 || msgs[0].Content != "hi" || msgs[1].Content != "hello" || msgs[1].RunID != r.RunID {
		t.Fatalf("transcript = %+v %v", msgs, err)
	}
	if last, _ := s.Transcript(ctx, "main", 1); len(last) != 1 || last[0].Content != "hello" {
		t.Fatalf("limit 1 = %+v", last)
	}
	if _, err := s.ResetSession(ctx, "main", owner); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := s.Transcript(ctx, "main", 0); len(msgs) != 0 {
		t.Fatalf("transcript after reset = %+v", msgs)
	}
	for _, bad := range []moltgate.RunRequest{{SessionKey: "", Message: "x"}, {SessionKey: "main", Message: "  "},
		{SessionKey: strings.Repeat("k", 300), Message: "x"}, {SessionKey: "main", Message: strings.Repeat("x", commands.MaxMessageBytes+1)}} {
		if _, err := s.SendMessage(ctx, bad, owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("%.40v: %v", bad, err)
		}
	}
}

// A token pasted into a chat is sealed in the log; the transcript keeps
// the sentence.
func TestChat_SealsPastedCredentials(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	token := "MTExMjIyMzMzNDQ0NTU1NjY2.GaBcDe.abcdefghijklmnopqrstuvwxyz0123"
	r, err := s.SendMessage(ctx, moltgate.RunRequest{SessionKey: "main", Message: "set up my Discord bot, the token is " + token}, owner)
	if err != nil {
		t.Fatal(err)
	}
	s.FinishRun(ctx, "main", r.RunID, &moltgate.ChatMessage{Content: "Done: I stored " + token}, moltgate.RunCompleted, "", owner)
	if n := count(t, s, "", token); n != 0 {
		t.Fatalf("the token is in %d events in plaintext", n)
	}
	msgs, _ := s.Transcript(ctx, "main", 0)
	if len(msgs) != 2 || !strings.HasPrefix(msgs[0].Content, "set up my Discord bot, the token is moltgate:sealed:") {
		t.Fatalf("transcript = %+v", msgs)
	}
	if got := s.Sealer.OpenText(moltgate.SessionStream("main"), msgs[1].Content); got != "Done: I stored "+token {
		t.Fatalf("opened reply = %q", got)
	}
	// A tool call's arguments are redacted before they are recorded.
	err = s.RecordToolCall(ctx, "main", r.RunID, moltgate.ToolCall{ID: "c1", Name: "gateway_config", Status: moltgate.ToolOK,
		Input: json.RawMessage(`{"patch":{"channels":{"discord":{"token":"` + token + `"}}},"note":"token ` + token + `"}`)}, owner)
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "", token); n != 0 {
		t.Fatal("a tool call put the token in the log")
	}
}

// The agent's reply and a close (shutdown, recovery) racing to end one run:
// either the reply and its finish land, or the close alone; never a reply
// after the end of its run.
func TestConcurrent_ReplyAndClose(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	for round := 0; round < 40; round++ {
		key := fmt.Sprintf("race%d", round)
		r, err := s.SendMessage(ctx, moltgate.RunRequest{SessionKey: key, Message: "hi"}, owner)
		if err != nil {
			t.Fatal(err)
		}
		inParallel(2, func(i int) {
			var err error
			if i == 0 {
				err = s.FinishRun(ctx, key, r.RunID, &moltgate.ChatMessage{Content: "hello"}, moltgate.RunCompleted, "", owner)
			} else {
				err = s.FinishRun(ctx, key, r.RunID, nil, moltgate.RunInterrupted, commands.InterruptedMessage, owner)
			}
			if err != nil {
				t.Error(err)
			}
		})
		events, err := s.Log.Query(ctx, eventlog.Filter{Stream: moltgate.SessionStream(key)})
		if err != nil {
			t.Fatal(err)
		}
		var replyID, finishedReply string
		finishes := 0
		for _, e := range events {
			switch e.Type {
			case moltgate.EventChatMessageAdded:
				var d moltgate.ChatMessageAddedData
				e.Decode(&d)
				if d.Role == "assistant" {
					if finishes > 0 {
						t.Fatalf("round %d: the reply landed after the end of its run", round)
					}
					replyID = e.ID
				}
			case moltgate.EventChatRunFinished:
				var d moltgate.ChatRunFinishedData
				e.Decode(&d)
				finishes++
				finishedReply = d.ReplyEventID
			}
		}
		if finishes != 1 || finishedReply != replyID {
			t.Fatalf("round %d: %d finishes, reply %q, the finish names %q", round, finishes, replyID, finishedReply)
		}
	}
}

// A reply lands while the session is busy: messages sent to it from many
// goroutines move its stream on under the reply's expected version, and
// the reply is decided again until it lands rather than left open (a
// run nobody finished is reported interrupted at the next start).
func TestConcurrent_ReplyWhileTheSessionIsBusy(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	first, err := s.SendMessage(ctx, moltgate.RunRequest{SessionKey: "busy", Message: "first"}, owner)
	if err != nil {
		t.Fatal(err)
	}
	const senders, each = 16, 20
	inParallel(senders+1, func(i int) {
		if i == senders {
			if err := s.FinishRun(ctx, "busy", first.RunID, &moltgate.ChatMessage{Content: "hello"}, moltgate.RunCompleted, "", owner); err != nil {
				t.Errorf("the reply was not recorded: %v", err)
			}
			return
		}
		for j := 0; j < each; j++ {
			if _, err := s.SendMessage(ctx, moltgate.RunRequest{SessionKey: "busy", Message: fmt.Sprint(i, "-", j)}, owner); err != nil {
				t.Error(err)
			}
		}
	})
	finished, err := s.Log.Query(ctx, eventlog.Filter{Stream: moltgate.SessionStream("busy"), TypePrefix: moltgate.EventChatRunFinished})
	if err != nil || len(finished) != 1 {
		t.Fatalf("%d runs finished (%v), want the first", len(finished), err)
	}
	var d moltgate.ChatRunFinishedData
	if finished[0].Decode(&d); d.RunID != first.RunID || d.Status != moltgate.RunCompleted || d.ReplyEventID == "" {
		t.Fatalf("the finish = %+v, want the first run completed with its reply", d)
	}
}

// A repeated approval answers with the device the request paired, also
// once that device was removed and paired again by a newer request.
func TestDevices_RepeatAfterRepairing(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	req := moltgate.Device{DeviceID: "d", PublicKey: "p", Role: "operator"}
	first, _, _ := s.RequestPairing(ctx, req, moltgate.Meta{})
	if _, err := s.ApprovePairing(ctx, first, moltgate.OwnerScopes, owner); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveDevice(ctx, "d", "lost", owner); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApprovePairing(ctx, first, moltgate.OwnerScopes, owner); moltgate.ErrorCode(err) != moltgate.ENOTFOUND || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("repeat approval of a removed device = %v", err)
	}
	second, _, _ := s.RequestPairing(ctx, req, moltgate.Meta{})
	if _, err := s.ApprovePairing(ctx, second, moltgate.OwnerScopes, owner); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{first, second} {
		if dev, err := s.ApprovePairing(ctx, id, moltgate.OwnerScopes, owner); err != nil || dev.DeviceID != "d" || dev.State != moltgate.DevicePaired {
			t.Errorf("repeat approval of %s = %+v %v, want the paired device", id, dev, err)
		}
	}
	rejected, _, _ := s.RequestPairing(ctx, moltgate.Device{DeviceID: "e", PublicKey: "p", Role: "operator"}, moltgate.Meta{})
	s.RejectPairing(ctx, rejected, "", owner)
	if dev, err := s.RejectPairing(ctx, rejected, "", owner); err != nil || dev.DeviceID != "e" || dev.State != moltgate.DeviceRejected {
		t.Errorf("repeat rejection = %+v %v", dev, err)
	}
}

// A failed attempt recorded twice counts its messages once, and its error
// keeps no credential.
func TestRecordDelivery(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	origin := &moltgate.ChannelAddress{Channel: "telegram", ChatID: "1", Sender: "1"}
	if _, _, err := s.RequestChannelPairing(ctx, "telegram", "1", "Ann", origin, moltgate.Meta{}); err != nil {
		t.Fatal(err)
	}
	pending := s.Models.Outbox.PendingDeliveries()
	if len(pending) != 1 {
		t.Fatalf("pending = %+v", pending)
	}
	token := "123456789:AAEabcdefghijklmnopqrstuvwxyz012345"
	sendErr := errors.New("Post https://api.telegram.org/bot" + token + "/sendMessage: 429 Too Many Requests")
	for range 2 {
		if err := s.RecordDelivery(ctx, pending[0], []string{"m1"}, sendErr, false); err != nil {
			t.Fatal(err)
		}
	}
	got := s.Models.Outbox.PendingDeliveries()
	if len(got) != 1 || got[0].Attempts != 1 || got[0].Sent != 1 {
		t.Fatalf("after one failed attempt recorded twice: %+v, want 1 attempt and 1 message sent", got)
	}
	if n := count(t, s, "", "AAEabcdefghijklmnopqrstuvwxyz012345"); n != 0 {
		t.Fatal("the bot token of a failed send is in the log")
	}
	if err := s.RecordDelivery(ctx, got[0], []string{"m2"}, nil, false); err != nil {
		t.Fatal(err)
	}
	if got := s.Models.Outbox.PendingDeliveries(); len(got) != 0 {
		t.Fatalf("pending after the send = %+v", got)
	}
}

func TestDevices_Reasons(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	id, _, _ := s.RequestPairing(ctx, moltgate.Device{DeviceID: "d", PublicKey: "p", Role: "operator"}, moltgate.Meta{})
	for _, bad := range []string{strings.Repeat("x", commands.MaxReason+1), "bad \xff"} {
		if _, err := s.RejectPairing(ctx, id, bad, owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("reject with %.20q = %v", bad, err)
		}
	}
	if _, err := s.ApprovePairing(ctx, id, moltgate.OwnerScopes, owner); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{strings.Repeat("x", commands.MaxReason+1), "bad \xff"} {
		if err := s.RemoveDevice(ctx, "d", bad, owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("remove with %.20q = %v", bad, err)
		}
	}
	if _, ok := s.Models.Devices.Device("d"); !ok {
		t.Fatal("a refused removal removed the device")
	}
	if err := s.RemoveDevice(ctx, "d", strings.Repeat("é", commands.MaxReason), owner); err != nil {
		t.Fatalf("a reason of %d characters = %v", commands.MaxReason, err)
	}
}

func TestInject(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	for _, bad := range []moltgate.ChatMessage{{Role: "tool", Content: "x"}, {Content: " \n "}, {Content: "bad \xff"},
		{Content: strings.Repeat("x", commands.MaxMessageBytes+1)}} {
		if _, err := s.Inject(ctx, "main", bad, owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("Inject(%.20q as %q) = %v", bad.Content, bad.Role, err)
		}
	}
	if _, err := s.Inject(ctx, "", moltgate.ChatMessage{Content: "x"}, owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
		t.Errorf("Inject without a session = %v", err)
	}
	msg, err := s.Inject(ctx, "main", moltgate.ChatMessage{Content: "note"}, owner)
	if err != nil || msg.Role != "assistant" || msg.ID == "" || msg.Timestamp.IsZero() {
		t.Fatalf("Inject = %+v %v", msg, err)
	}
	if msgs, _ := s.Transcript(ctx, "main", 0); len(msgs) != 1 || msgs[0].ID != msg.ID || msgs[0].Content != "note" {
		t.Fatalf("transcript = %+v", msgs)
	}
}

func TestRecordToolCall(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	for _, bad := range []moltgate.ToolCall{{Name: "web_fetch"}, {ID: "c1"}} {
		if err := s.RecordToolCall(ctx, "main", "run1", bad, owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("RecordToolCall(%+v) = %v", bad, err)
		}
	}
	if err := s.RecordToolCall(ctx, "", "run1", moltgate.ToolCall{ID: "c1", Name: "web_fetch"}, owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
		t.Errorf("RecordToolCall without a session = %v", err)
	}
	call := moltgate.ToolCall{ID: "c1", Name: "web_fetch", Status: moltgate.ToolOK, Summary: "fetched the page, a summary only stored once"}
	for range 2 { // a retry records nothing new
		if err := s.RecordToolCall(ctx, "main", "run1", call, owner); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, s, moltgate.EventChatMessageAdded, ""); n != 1 {
		t.Fatalf("%d tool messages, want 1", n)
	}
	events, _ := s.Log.Query(ctx, eventlog.Filter{TypePrefix: moltgate.EventChatMessageAdded})
	if n := strings.Count(string(events[0].Data), "a summary only stored once"); n != 1 {
		t.Fatalf("the summary is in the event %d times: %s", n, events[0].Data)
	}
	msgs, err := s.Transcript(ctx, "main", 0)
	if err != nil || len(msgs) != 1 || msgs[0].Role != "tool" || msgs[0].Content != call.Summary || msgs[0].Tool == nil || msgs[0].Tool.Summary != call.Summary {
		t.Fatalf("transcript = %+v %v", msgs, err)
	}
}
