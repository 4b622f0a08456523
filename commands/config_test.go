package commands_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	moltgate "github.com/moltgate/moltgate"
)

func asError(err error) *moltgate.Error {
	e, _ := err.(*moltgate.Error)
	return e
}

func TestConfig(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	doc := json.RawMessage(`{"models":{"providers":{"deepseek":{"api":"openai-completions","baseUrl":"https://api.deepseek.com/v1","apiKey":"${DEEPSEEK_API_KEY}","models":[{"id":"deepseek-chat"}]}}},
		"agents":{"defaults":{"model":{"primary":"deepseek/deepseek-chat","fallbacks":["anthropic/claude-sonnet-4"]}}}}`)
	r1, err := s.ApplyConfig(ctx, doc, "", owner)
	if err != nil || !r1.Changed {
		t.Fatal(r1, err)
	}
	if _, err := s.ApplyConfig(ctx, doc, "", owner); moltgate.ErrorCode(err) != moltgate.ECONFLICT {
		t.Fatalf("apply without baseHash once a config exists = %v", err)
	}
	if same, err := s.ApplyConfig(ctx, doc, r1.Hash, owner); err != nil || same.Changed || same.Hash != r1.Hash {
		t.Fatalf("the same document again = %+v %v, want unchanged", same, err)
	}
	_, err = s.ApplyConfig(ctx, doc, "stale", owner)
	if e := asError(err); e == nil || e.Code != moltgate.ECONFLICT || e.Details["currentHash"] != r1.Hash {
		t.Fatalf("stale baseHash = %v", err)
	}
	r2, err := s.PatchConfig(ctx, json.RawMessage(`{"agents":{"defaults":{"model":{"fallbacks":null}}}}`), r1.Hash, owner)
	if err != nil || r2.Hash == r1.Hash {
		t.Fatalf("patch = %+v %v", r2, err)
	}
	cur, hash := s.Models.Config.Current()
	if hash != r2.Hash || strings.Contains(string(cur), "fallbacks") || !strings.Contains(string(cur), "deepseek-chat") {
		t.Fatalf("after patch: %s %s", hash, cur)
	}

	_, err = s.ApplyConfig(ctx, json.RawMessage(`{"models":{"providers":{"x":{"api":"grpc","baseUrl":"ftp://x","apiKey":"sk-live-123","models":[{}]}}},
		"agents":{"defaults":{"model":{"primary":"nonsense"}}}}`), r2.Hash, owner)
	e := asError(err)
	if e == nil || e.Code != moltgate.EINVALID {
		t.Fatalf("invalid config = %v", err)
	}
	var paths []string
	for _, is := range e.Details["issues"].([]moltgate.ConfigIssue) {
		paths = append(paths, is.Path)
	}
	want := "agents.defaults.model.primary models.providers.x.api models.providers.x.baseUrl models.providers.x.models[0]"
	if strings.Join(paths, " ") != want {
		t.Fatalf("issues at %v, want %s", paths, want)
	}
	if strings.Contains(err.Error(), "sk-live-123") {
		t.Fatal("the error repeats the secret")
	}
	if _, h := s.Models.Config.Current(); h != r2.Hash {
		t.Fatal("an invalid config changed something")
	}
	tooLarge := `{"agents":{},"pad":"` + strings.Repeat("x", moltgate.MaxConfigBytes) + `"}`
	for _, bad := range []string{`[]`, `{`, `"x"`, `{"agents":{"defaults":{"model":{"fallbacks":"x"}}}}`, `{"channels":{"telegram":{"dmPolicy":"everyone"}}}`, tooLarge} {
		if _, err := s.ApplyConfig(ctx, json.RawMessage(bad), r2.Hash, owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("%.80s: %v", bad, err)
		}
	}
	// Revert brings the first version back as a new one.
	first := s.Models.Config.History()[0].Seq
	r3, err := s.RevertConfig(ctx, first, r2.Hash, owner)
	if _, now := s.Models.Config.Current(); err != nil || now != r1.Hash || r3.Hash != r1.Hash {
		t.Fatalf("revert = %+v %v", r3, err)
	}
}

// OpenClaw clients send secrets in plaintext: they are accepted, sealed
// before they are appended, shown as the redaction marker, and kept when
// the marker comes back.
func TestConfig_SealsSecrets(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	doc := `{"models":{"providers":{"deepseek":{"api":"openai-completions","baseUrl":"https://api.deepseek.com/v1","apiKey":"sk-plaintext-deepseek-key",
		"headers":{"Authorization":"Bearer header-secret-value"}}}},"channels":{"discord":{"token":"discord-token-secret"}}}`
	r, err := s.ApplyConfig(ctx, json.RawMessage(doc), "", owner)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"sk-plaintext-deepseek-key", "header-secret-value", "discord-token-secret"} {
		if n := count(t, s, "", secret); n != 0 {
			t.Fatalf("%s is in the log in plaintext", secret)
		}
	}
	stored, _ := s.Models.Config.Current()
	redacted := moltgate.RedactSealed(stored)
	if !strings.Contains(string(redacted), moltgate.RedactedMarker) || strings.Contains(string(redacted), moltgate.SealedPrefix) {
		t.Fatalf("redacted document: %s", redacted)
	}
	// A client edits the redacted document and sends it back.
	edited := strings.Replace(string(redacted), `"https://api.deepseek.com/v1"`, `"https://api.deepseek.com/beta"`, 1)
	r2, err := s.ApplyConfig(ctx, json.RawMessage(edited), r.Hash, owner)
	if err != nil || !r2.Changed {
		t.Fatalf("apply with markers = %+v %v", r2, err)
	}
	after, _ := s.Models.Config.Current()
	var cfg moltgate.Config
	json.Unmarshal(after, &cfg)
	if key, err := s.Sealer.Open("models.providers.deepseek.apiKey", cfg.Models.Providers["deepseek"].APIKey); err != nil || key != "sk-plaintext-deepseek-key" {
		t.Fatalf("the stored key after a marker round trip = %q %v", key, err)
	}
	// A marker where nothing is stored is refused.
	_, err = s.PatchConfig(ctx, json.RawMessage(`{"channels":{"slack":{"botToken":"`+moltgate.RedactedMarker+`"}}}`), r2.Hash, owner)
	if moltgate.ErrorCode(err) != moltgate.EINVALID || !strings.Contains(err.Error(), "channels.slack.botToken") {
		t.Fatalf("marker without a stored value = %v", err)
	}
}

// ${NAME} may not read moltgate's own secrets; an unset one is a warning.
func TestConfig_EnvReferences(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	for _, name := range []string{"MOLTBOT_GATEWAY_TOKEN", "R2_SECRET_ACCESS_KEY", "CF_ACCESS_AUD", "CDP_SECRET", "MOLTGATE_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"} {
		doc := `{"models":{"providers":{"evil":{"api":"openai-completions","baseUrl":"https://evil.example","apiKey":"${` + name + `}"}}}}`
		_, err := s.ApplyConfig(ctx, json.RawMessage(doc), "", owner)
		if moltgate.ErrorCode(err) != moltgate.EINVALID || !strings.Contains(err.Error(), name) {
			t.Errorf("${%s}: %v", name, err)
		}
	}
	doc := json.RawMessage(`{"models":{"providers":{"x":{"api":"openai-completions","apiKey":"${NOT_SET_HERE}"}}}}`)
	issues, warnings := s.CheckConfig(ctx, doc)
	if len(issues) != 0 || len(warnings) != 1 || !strings.Contains(warnings[0].Message, "NOT_SET_HERE") {
		t.Fatalf("check = %v %v", issues, warnings)
	}
	r, err := s.ApplyConfig(ctx, doc, "", owner)
	if err != nil || len(r.Warnings) != 1 || r.Warnings[0].Path != "models.providers.x.apiKey" {
		t.Fatalf("apply = %+v %v", r, err)
	}
}

// A baseUrl with a password is sealed whole and reads back as the marker;
// the document read back applies again, and keeps the stored URL.
func TestConfig_URLWithPasswordRoundTrips(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	doc := `{"models":{"providers":{"p":{"api":"openai-completions","baseUrl":"https://user:pw-secret@proxy.example/v1","apiKey":"${X}"}}}}`
	r, err := s.ApplyConfig(ctx, json.RawMessage(doc), "", owner)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := s.Models.Config.Current()
	redacted := moltgate.RedactSealed(stored)
	if !strings.Contains(string(redacted), `"baseUrl":"`+moltgate.RedactedMarker+`"`) {
		t.Fatalf("read back: %s", redacted)
	}
	again, err := s.ApplyConfig(ctx, redacted, r.Hash, owner)
	if err != nil || again.Changed {
		t.Fatalf("applying the document read back = %+v %v, want accepted and unchanged", again, err)
	}
	// A bad URL's issue does not repeat its password.
	_, err = s.ApplyConfig(ctx, json.RawMessage(`{"models":{"providers":{"p":{"api":"openai-completions","baseUrl":"htps://user:pw-secret@proxy.example/v1"}}}}`), r.Hash, owner)
	if moltgate.ErrorCode(err) != moltgate.EINVALID || strings.Contains(err.Error(), "pw-secret") || strings.Contains(fmt.Sprint(asError(err).Details), "pw-secret") {
		t.Fatalf("bad URL = %v", err)
	}
}

// A patch is one JSON document: anything after it is refused, not dropped.
func TestPatchConfig_TrailingData(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	r, err := s.ApplyConfig(ctx, json.RawMessage(`{"agents":{}}`), "", owner)
	if err != nil {
		t.Fatal(err)
	}
	for _, patch := range []string{`{"b":2} {"c":3}`, `{"b":2}}`} {
		if _, err := s.PatchConfig(ctx, json.RawMessage(patch), r.Hash, owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("patch %s = %v, want invalid", patch, err)
		}
	}
	if _, h := s.Models.Config.Current(); h != r.Hash {
		t.Fatal("a refused patch changed the config")
	}
}

func TestRevertConfig_NotAConfigVersion(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	r, err := s.ApplyConfig(ctx, json.RawMessage(`{"agents":{}}`), "", owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Inject(ctx, "main", moltgate.ChatMessage{Content: "not a config"}, owner); err != nil {
		t.Fatal(err)
	}
	last := s.Log.LastSeq()
	if _, err := s.RevertConfig(ctx, last, r.Hash, owner); moltgate.ErrorCode(err) != moltgate.ENOTFOUND || !strings.Contains(err.Error(), "not a config version") {
		t.Fatalf("revert to a chat message = %v", err)
	}
	if _, err := s.RevertConfig(ctx, last+10, r.Hash, owner); moltgate.ErrorCode(err) != moltgate.ENOTFOUND {
		t.Fatalf("revert to a seq past the log = %v", err)
	}
	if n := count(t, s, moltgate.EventConfigApplied, ""); n != 1 {
		t.Fatalf("%d config versions, want 1", n)
	}
}
