package secrets_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/secrets"
)

func mustSealer(tb testing.TB) *secrets.Sealer {
	tb.Helper()
	key, err := secrets.ParseKey(strings.Repeat("ab", 32))
	if err != nil {
		tb.Fatal(err)
	}
	s, err := secrets.NewSealer(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestSealer_RoundTripAndPathBinding(t *testing.T) {
	s := mustSealer(t)
	sealed := s.Seal("models.providers.a.apiKey", "sk-live-123")
	if !moltgate.IsSealed(sealed) || strings.Contains(sealed, "sk-live-123") {
		t.Fatalf("sealed = %q", sealed)
	}
	got, err := s.Open("models.providers.a.apiKey", sealed)
	if err != nil || got != "sk-live-123" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open("models.providers.evil.apiKey", sealed); err == nil {
		t.Fatal("a value sealed for one provider opened for another")
	}
	other, _ := secrets.NewSealer(make([]byte, 32))
	if _, err := other.Open("models.providers.a.apiKey", sealed); !errors.Is(err, secrets.ErrOtherKey) {
		t.Fatalf("other key: %v", err)
	}
	// Damaged, for the path it was sealed for: the tag does not match.
	if _, err := s.Open("models.providers.a.apiKey", sealed[:len(sealed)-4]+"AAAA"); err == nil {
		t.Fatal("a damaged value opened")
	}
	if _, err := s.Open("models.providers.a.apiKey", sealed[:len(sealed)-40]); err == nil {
		t.Fatal("a cut value opened")
	}
}

func TestParseKey(t *testing.T) {
	for _, good := range []string{strings.Repeat("0f", 32), " " + strings.Repeat("0f", 32) + "\n", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"} {
		if k, err := secrets.ParseKey(good); err != nil || len(k) != 32 {
			t.Errorf("ParseKey(%q) = %d bytes, %v", good, len(k), err)
		}
	}
	// A passphrase, however long, would be a key one can guess offline
	// against the sealed values in the replica.
	for _, bad := range []string{"short", "a passphrase that is long enough to derive a key", strings.Repeat("0f", 31), strings.Repeat("0f", 33)} {
		if _, err := secrets.ParseKey(bad); err == nil || !strings.Contains(err.Error(), "openssl rand -hex 32") {
			t.Errorf("ParseKey(%q) = %v, want refused", bad, err)
		}
	}
}

func TestLoadOrCreateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret-key")
	k1, created, err := secrets.LoadOrCreateKeyFile(path)
	if err != nil || !created || len(k1) != 32 {
		t.Fatalf("create: %v %v", created, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	k2, created, err := secrets.LoadOrCreateKeyFile(path)
	if err != nil || created || string(k1) != string(k2) {
		t.Fatalf("reload: created=%v err=%v same=%v", created, err, string(k1) == string(k2))
	}
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := secrets.LoadOrCreateKeyFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("a damaged key file = %v, want an error naming it", err)
	}
}

// Processes starting at once share one key: none reads a file another is
// still writing, and one creates it.
func TestLoadOrCreateKeyFile_Concurrent(t *testing.T) {
	for round := 0; round < 20; round++ {
		path := filepath.Join(t.TempDir(), "data", "secret-key")
		keys := make([][]byte, 8)
		created := make([]bool, 8)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if keys[i], created[i], err = secrets.LoadOrCreateKeyFile(path); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		n := 0
		for i := range keys {
			if string(keys[i]) != string(keys[0]) {
				t.Fatalf("round %d: two keys", round)
			}
			if created[i] {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("round %d: %d processes created the key", round, n)
		}
		if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
			t.Fatalf("round %d: %d files beside the key, want the key alone", round, len(entries))
		}
	}
}

// The shapes from the issue: every one of them must be sealed.
func TestSealDocument_SealsEverySensitiveShape(t *testing.T) {
	s := mustSealer(t)
	doc := `{
	 "models":{"providers":{
	   "deepseek":{"api":"openai-completions","baseUrl":"https://api.deepseek.com/v1","apiKey":"sk-plain-apikey-1",
	     "headers":{"Authorization":"Bearer hdr-secret-2","X-Custom":"hdr-secret-3"}},
	   "a":{"api":"anthropic-messages","APIKEY":"plain-APIKEY-4"},
	   "b":{"api":"anthropic-messages","api_key":"plain-api_key-5","baseUrl":"https://user:url-secret-6@example.com/v1"}}},
	 "env":{"vars":{"OPENROUTER":"env-var-secret-7"},"BRAVE_API_KEY":"env-secret-8"},
	 "skills":{"entries":{"x":{"env":{"FOO":"skill-env-secret-9"}}}},
	 "channels":{"discord":{"BotToken":"bot-token-10","token":"disc-token-11"},"telegram":{"botToken":"123:tg-token-12"}},
	 "tools":{"note":"ghp_abcdefghijklmnopqrstuvwxyz0123456789"},
	 "agents":{"defaults":{"model":{"primary":"deepseek/deepseek-chat"},"maxTokens":4096}},
	 "keep":{"apiKey":"${DEEPSEEK_API_KEY}","title":"not a secret"}
	}`
	out, issues := s.SealDocument(json.RawMessage(doc), nil)
	if len(issues) > 0 {
		t.Fatal(issues)
	}
	for _, plain := range []string{"sk-plain-apikey-1", "hdr-secret-2", "hdr-secret-3", "plain-APIKEY-4", "plain-api_key-5", "url-secret-6",
		"env-var-secret-7", "env-secret-8", "skill-env-secret-9", "bot-token-10", "disc-token-11", "tg-token-12", "ghp_abcdefghij"} {
		if strings.Contains(string(out), plain) {
			t.Errorf("%s is still in plaintext", plain)
		}
	}
	for _, kept := range []string{`"${DEEPSEEK_API_KEY}"`, `"not a secret"`, `"https://api.deepseek.com/v1"`, `4096`, `"deepseek/deepseek-chat"`} {
		if !strings.Contains(string(out), kept) {
			t.Errorf("%s was changed", kept)
		}
	}
	// What a reader sees.
	red := string(moltgate.RedactSealed(out))
	if strings.Contains(red, moltgate.SealedPrefix) || !strings.Contains(red, moltgate.RedactedMarker) {
		t.Fatalf("redacted: %s", red)
	}
	// Opened where it is used.
	r := secrets.Resolver{Sealer: s}
	var cfg moltgate.Config
	json.Unmarshal(out, &cfg)
	if key, err := r.Resolve("models.providers.deepseek.apiKey", cfg.Models.Providers["deepseek"].APIKey); err != nil || key != "sk-plain-apikey-1" {
		t.Fatalf("resolve = %q %v", key, err)
	}
}

func TestSealDocument_MarkerKeepsStoredValue(t *testing.T) {
	s := mustSealer(t)
	first, _ := s.SealDocument(json.RawMessage(`{"models":{"providers":{"a":{"apiKey":"sk-one-secret-value"}}}}`), nil)
	// A client sends back what it read, with a new field.
	back := strings.Replace(string(moltgate.RedactSealed(first)), `}}}}`, `,"baseUrl":"https://x.example"}}}}`, 1)
	second, issues := s.SealDocument(json.RawMessage(back), first)
	if len(issues) > 0 {
		t.Fatal(issues)
	}
	if !strings.Contains(string(second), extract(t, first)) {
		t.Fatalf("the stored ciphertext was not kept: %s", second)
	}
	// The same plaintext again keeps the ciphertext too (no spurious change).
	again, _ := s.SealDocument(json.RawMessage(`{"models":{"providers":{"a":{"apiKey":"sk-one-secret-value"}}}}`), first)
	if string(again) != string(first) {
		t.Fatalf("re-applying the same secret changed the document:\n%s\n%s", first, again)
	}
	// A marker with nothing stored is refused, naming the path.
	_, issues = s.SealDocument(json.RawMessage(`{"channels":{"slack":{"botToken":"`+moltgate.RedactedMarker+`"}}}`), first)
	if len(issues) != 1 || issues[0].Path != "channels.slack.botToken" {
		t.Fatalf("issues = %v", issues)
	}
}

func TestUnopenable(t *testing.T) {
	s := mustSealer(t)
	doc, _ := s.SealDocument(json.RawMessage(`{"models":{"providers":{"a":{"apiKey":"sk-one-secret-value"}}},"channels":{"telegram":{"botToken":"1:abc"}}}`), nil)
	if got := s.Unopenable(doc); len(got) != 0 {
		t.Fatalf("own key: %v", got)
	}
	other, _ := secrets.NewSealer(make([]byte, 32))
	got := other.Unopenable(doc)
	if len(got) != 2 || got[0].Path != "channels.telegram.botToken" || !strings.Contains(got[0].Message, "MOLTGATE_SECRET_KEY") {
		t.Fatalf("Unopenable = %v", got)
	}
}

func TestResolver_Env(t *testing.T) {
	env := map[string]string{"DEEPSEEK_API_KEY": "dk", "MOLTBOT_GATEWAY_TOKEN": "gw", "R2_SECRET_ACCESS_KEY": "r2"}
	r := secrets.Resolver{Getenv: func(k string) string { return env[k] }}
	if v, err := r.Resolve("p", "${DEEPSEEK_API_KEY}"); err != nil || v != "dk" {
		t.Fatalf("%q %v", v, err)
	}
	for _, ref := range []string{"${MOLTBOT_GATEWAY_TOKEN}", "${R2_SECRET_ACCESS_KEY}", "Bearer ${MOLTGATE_SECRET_KEY}", "${AWS_SECRET}", "${CF_ACCESS_AUD}", "${CDP_SECRET}"} {
		if v, err := r.Resolve("p", ref); err == nil || v != "" || moltgate.ErrorCode(err) != moltgate.EFORBIDDEN {
			t.Errorf("%s resolved to %q (%v)", ref, v, err)
		}
	}
	var missing *moltgate.MissingEnvError
	if _, err := r.Resolve("p", "${NOT_SET_ANYWHERE}"); !errors.As(err, &missing) || missing.Name != "NOT_SET_ANYWHERE" {
		t.Fatalf("missing: %v", err)
	}
}

func extract(t *testing.T, doc json.RawMessage) string {
	i := strings.Index(string(doc), moltgate.SealedPrefix)
	if i < 0 {
		t.Fatal("no sealed value")
	}
	j := strings.IndexByte(string(doc[i:]), '"')
	return string(doc[i : i+j])
}

// "my Discord token is …": the sentence is kept, the token sealed, and
// opened again for the model.
func TestSealText(t *testing.T) {
	s := mustSealer(t)
	tokens := []string{
		"MTExMjIyMzMzNDQ0NTU1NjY2.GaBcDe.abcdefghijklmnopqrstuvwxyz0123",
		"123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
		"sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
		"xoxb-1234567890-abcdefghijkl",
	}
	text := "set up my Discord bot, the token is " + tokens[0] + ". Telegram: " + tokens[1] + ", key " + tokens[2] + " and slack " + tokens[3]
	sealed := s.SealText("session:main", text)
	for _, tok := range tokens {
		if strings.Contains(sealed, tok) {
			t.Fatalf("%s left in plaintext: %s", tok, sealed)
		}
	}
	if !strings.HasPrefix(sealed, "set up my Discord bot, the token is ") {
		t.Fatalf("the sentence was not kept: %s", sealed)
	}
	if got := s.OpenText("session:main", sealed); got != text {
		t.Fatalf("OpenText = %s", got)
	}
	if got := s.OpenText("session:other", sealed); strings.Contains(got, tokens[0]) || !strings.Contains(got, moltgate.RedactedMarker) {
		t.Fatalf("opened for another session: %s", got)
	}
	if red := moltgate.RedactText(sealed); strings.Count(red, moltgate.RedactedMarker) != 4 || strings.Contains(red, moltgate.SealedPrefix) {
		t.Fatalf("RedactText = %s", red)
	}
	plain := "no secrets here: version 1.2.3, https://example.com/a.b.c and maxTokens 4096"
	if got := s.SealText("p", plain); got != plain {
		t.Fatalf("plain text changed: %s", got)
	}
}
