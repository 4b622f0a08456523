package commands_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/commands"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/projections"
)

// MustOpenService opens a log, its read models and the service over them.
func MustOpenService(tb testing.TB) *commands.Service {
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
	return commands.New(l, r, set)
}

var owner = moltgate.Meta{Actor: "owner@example.com", Source: moltgate.SourceUI}

func TestDevices(t *testing.T) {
	s := MustOpenService(t)
	ctx := context.Background()
	req := moltgate.PairingRequest{DeviceID: "dev1", PublicKey: "pk1", Role: "operator", Scopes: []string{"operator.read"}}
	id, created, err := s.RequestPairing(ctx, req, moltgate.Meta{Source: moltgate.SourceWS})
	if err != nil || !created {
		t.Fatalf("RequestPairing = %s %v %v", id, created, err)
	}
	// The client reconnects while waiting: same request.
	again, created, err := s.RequestPairing(ctx, req, moltgate.Meta{})
	if err != nil || created || again != id {
		t.Fatalf("second request = %s %v %v, want %s reused", again, created, err, id)
	}
	if _, err := s.ApprovePairing(ctx, "nope", owner); moltgate.ErrorCode(err) != moltgate.ENOTFOUND {
		t.Fatalf("approve unknown = %v", err)
	}
	dev, err := s.ApprovePairing(ctx, id, owner)
	if err != nil || dev != "dev1" {
		t.Fatalf("approve = %s %v", dev, err)
	}
	if dev, err := s.ApprovePairing(ctx, id, owner); err != nil || dev != "dev1" {
		t.Fatalf("double approval = %s %v, want idempotent", dev, err)
	}
	token, err := s.IssueToken(ctx, "dev1", owner)
	if err != nil || len(token) < 40 {
		t.Fatalf("IssueToken = %q %v", token, err)
	}
	paired, _ := s.Models.Devices.Device("dev1")
	if paired.TokenHash != commands.HashToken(token) {
		t.Fatal("the stored hash does not match the issued token")
	}
	events, _ := s.Log.Query(ctx, eventlog.Filter{})
	for _, e := range events {
		if strings.Contains(string(e.Data), token) {
			t.Fatalf("the device token is in the log at seq %d", e.Seq)
		}
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

	id2, _, _ := s.RequestPairing(ctx, moltgate.PairingRequest{DeviceID: "dev2", PublicKey: "pk2", Role: "operator"}, moltgate.Meta{})
	if err := s.RejectPairing(ctx, id2, "unknown device", owner); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApprovePairing(ctx, id2, owner); moltgate.ErrorCode(err) != moltgate.ENOTFOUND {
		t.Fatalf("approve after reject = %v", err)
	}
}

func TestDevices_Expiry(t *testing.T) {
	s := MustOpenService(t)
	now := time.Now()
	s.Now = func() time.Time { return now }
	id, _, _ := s.RequestPairing(context.Background(), moltgate.PairingRequest{DeviceID: "d", PublicKey: "p", Role: "operator"}, moltgate.Meta{})
	now = now.Add(commands.DefaultPairingTTL + time.Second)
	if _, err := s.ApprovePairing(context.Background(), id, owner); moltgate.ErrorCode(err) != moltgate.ENOTFOUND || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("approve expired = %v", err)
	}
}

func TestConfig(t *testing.T) {
	s := MustOpenService(t)
	ctx := context.Background()
	doc := json.RawMessage(`{"models":{"providers":{"deepseek":{"api":"openai-completions","baseUrl":"https://api.deepseek.com/v1","apiKey":"${DEEPSEEK_API_KEY}","models":[{"id":"deepseek-chat"}]}}},
		"agents":{"defaults":{"model":{"primary":"deepseek/deepseek-chat","fallbacks":["anthropic/claude-sonnet-4"]}}}}`)
	h1, err := s.ApplyConfig(ctx, doc, "", owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyConfig(ctx, doc, "", owner); moltgate.ErrorCode(err) != moltgate.ECONFLICT {
		t.Fatalf("apply without baseHash once a config exists = %v", err)
	}
	var e *moltgate.Error
	_, err = s.ApplyConfig(ctx, doc, "stale", owner)
	if moltgate.ErrorCode(err) != moltgate.ECONFLICT || !asError(err, &e) || e.Details["currentHash"] != h1 {
		t.Fatalf("stale baseHash = %v", err)
	}
	h2, err := s.PatchConfig(ctx, json.RawMessage(`{"agents":{"defaults":{"model":{"fallbacks":null}}}}`), h1, owner)
	if err != nil || h2 == h1 {
		t.Fatalf("patch = %s %v", h2, err)
	}
	cur, hash := s.Models.Config.Current()
	if hash != h2 || strings.Contains(string(cur), "fallbacks") || !strings.Contains(string(cur), "deepseek-chat") {
		t.Fatalf("after patch: %s %s", hash, cur)
	}

	_, err = s.ApplyConfig(ctx, json.RawMessage(`{"models":{"providers":{"x":{"api":"grpc","baseUrl":"ftp://x","apiKey":"sk-live-123","models":[{}]}}},
		"agents":{"defaults":{"model":{"primary":"nonsense"}}}}`), h2, owner)
	if !asError(err, &e) || e.Code != moltgate.EINVALID {
		t.Fatalf("invalid config = %v", err)
	}
	issues := e.Details["issues"].([]moltgate.ConfigIssue)
	var paths []string
	for _, is := range issues {
		paths = append(paths, is.Path)
	}
	want := "models.providers.x.apiKey models.providers.x.api models.providers.x.baseUrl models.providers.x.models[0] agents.defaults.model.primary"
	if strings.Join(paths, " ") != want {
		t.Fatalf("issues at %v, want %s", paths, want)
	}
	if strings.Contains(err.Error(), "sk-live-123") {
		t.Fatal("the error repeats the secret")
	}
	if _, h := s.Models.Config.Current(); h != h2 {
		t.Fatal("an invalid config changed something")
	}
	for _, bad := range []string{`[]`, `{`, `"x"`} {
		if _, err := s.ApplyConfig(ctx, json.RawMessage(bad), h2, owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func asError(err error, target **moltgate.Error) bool {
	e, ok := err.(*moltgate.Error)
	if ok {
		*target = e
	}
	return ok
}

func TestChat(t *testing.T) {
	s := MustOpenService(t)
	ctx := context.Background()
	run1, created, err := s.StartRun(ctx, moltgate.RunRequest{SessionKey: "main", Message: "hi", IdempotencyKey: "k1"}, owner)
	if err != nil || !created {
		t.Fatal(err)
	}
	again, created, err := s.StartRun(ctx, moltgate.RunRequest{SessionKey: "main", Message: "hi", IdempotencyKey: "k1"}, owner)
	if err != nil || created || again != run1 {
		t.Fatalf("retried send = %s %v %v, want run %s again", again, created, err, run1)
	}
	if err := s.FinishRun(ctx, "main", run1, &moltgate.ChatMessage{Content: "hello", Model: "echo/echo"}, moltgate.RunCompleted, "", owner); err != nil {
		t.Fatal(err)
	}
	msgs, err := s.Transcript(ctx, "main", 0)
	if err != nil || len(msgs) != 2 || msgs[0].Content != "hi" || msgs[1].Content != "hello" || msgs[1].RunID != run1 {
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
	for _, bad := range []moltgate.RunRequest{{SessionKey: "", Message: "x"}, {SessionKey: "main", Message: "  "}, {SessionKey: strings.Repeat("k", 300), Message: "x"}} {
		if _, _, err := s.StartRun(ctx, bad, owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
