package moltgate_test

import (
	"encoding/json"
	"strings"
	"testing"

	moltgate "github.com/moltgate/moltgate"
)

func TestParseConfig(t *testing.T) {
	cfg, issues := moltgate.ParseConfig(json.RawMessage(`{
	  "models":{"providers":{"ds":{"api":"openai-completions","baseUrl":"https://api.deepseek.com/v1","apiKey":"${DEEPSEEK_API_KEY}",
	    "models":["deepseek-chat",{"id":"deepseek-reasoner","contextWindow":64000,"maxTokens":8000,"input":["text","image"]}]}}},
	  "agents":{"defaults":{"model":"ds/deepseek-chat"}},
	  "channels":{"telegram":{"allowFrom":[123456789,"@ada"],"dmPolicy":"allowlist"}},
	  "gateway":{"trustedProxies":["10.0.0.0/8","::1"]},
	  "unknown":{"kept":true}}`))
	if len(issues) > 0 {
		t.Fatal(issues)
	}
	p := cfg.Models.Providers["ds"]
	if len(p.Models) != 2 || p.Models[0].ID != "deepseek-chat" || !p.Models[1].AcceptsImages() || p.Models[1].ContextWindow != 64000 {
		t.Fatalf("models = %+v", p.Models)
	}
	if cfg.Agents.Defaults.Model.Primary != "ds/deepseek-chat" {
		t.Fatal("the short model form was not read")
	}
	if got := strings.Join(cfg.Channels.Telegram.AllowFrom, ","); got != "123456789,@ada" {
		t.Fatalf("allowFrom = %s", got)
	}

	for doc, wantPath := range map[string]string{
		`{"agents":{"defaults":{"model":{"fallbacks":"x"}}}}`:                                                                   "agents.defaults.model.fallbacks",
		`{"channels":{"slack":{"dm":{"policy":"everyone"}}}}`:                                                                   "channels.slack.dm.policy",
		`{"session":{"dmScope":"per-planet"}}`:                                                                                  "session.dmScope",
		`{"gateway":{"trustedProxies":["not-an-ip"]}}`:                                                                          "gateway.trustedProxies[0]",
		`{"models":{"providers":{"x":{"api":"openai-completions","baseUrl":"ftp://x"}}}}`:                                       "models.providers.x.baseUrl",
		`{"models":{"providers":{"x":{"api":"openai-completions","models":[{"id":"m","contextWindow":100,"maxTokens":200}]}}}}`: "models.providers.x.models[0].maxTokens",
		`[]`:   "$",
		`{"a"`: "$",
	} {
		_, issues := moltgate.ParseConfig(json.RawMessage(doc))
		if len(issues) == 0 || issues[0].Path != wantPath {
			t.Errorf("%s: issues = %v, want one at %s", doc, issues, wantPath)
		}
	}
}

func TestIsSensitive(t *testing.T) {
	for path, want := range map[string]bool{
		"models.providers.x.apiKey": true, "models.providers.x.APIKEY": true, "x.api_key": true, "channels.discord.BotToken": true,
		"channels.slack.appToken": true, "channels.slack.signingSecret": true, "gateway.auth.password": true,
		"models.providers.x.headers.X-Anything": true, "env.vars.OPENROUTER": true, "skills.entries.s.env.FOO": true, "env.BRAVE": true,
		"models.providers.x.models.0.maxTokens": false, "agents.defaults.model.primary": false, "channels.telegram.dmPolicy": false,
		"models.providers.x.baseUrl": false, "x.tokens": false,
	} {
		if got := moltgate.IsSensitive(strings.Split(path, "."), "value"); got != want {
			t.Errorf("%s: sensitive = %v, want %v", path, got, want)
		}
	}
	if !moltgate.IsSensitive([]string{"baseUrl"}, "https://user:secret@host/v1") {
		t.Error("a URL with a password is not sensitive")
	}
	if !moltgate.IsSensitive([]string{"note"}, "sk-live-0123456789abcdef") {
		t.Error("a well-known key prefix is not sensitive")
	}
}

func TestFindCredentials(t *testing.T) {
	text := "my token is 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw, thanks! And sk-ant-api03-abcdefghijklmnop."
	spans := moltgate.FindCredentials(text)
	if len(spans) != 2 || text[spans[0][0]:spans[0][1]] != "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" ||
		!strings.HasPrefix(text[spans[1][0]:spans[1][1]], "sk-ant-api03-abcdefghijklmnop") {
		t.Fatalf("spans = %v", spans)
	}
	for _, cred := range []string{
		"xoxb-1234567890-abcdefghij", "xapp-1-A0123456789-abcdef", "ghp_" + strings.Repeat("a1", 18), "github_pat_" + strings.Repeat("B2", 20),
		"glpat-abcdefghij0123456789", "AKIAABCDEFGHIJKLMNOP", "MTExMjIzMzQ0NTU2Njc3ODg5.GaBcDe.abcdefghijklmnopqrstuvwxyz0123",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3In0.abcdefghijklmnop",
	} {
		text := "here: " + cred + " (keep it safe)"
		if spans := moltgate.FindCredentials(text); len(spans) != 1 || text[spans[0][0]:spans[0][1]] != cred {
			t.Errorf("%s: spans %v", cred, spans)
		}
	}
	for _, plain := range []string{"version 1.2.3 of github.com/moltgate/moltgate", strings.Repeat("a", 10000), "2026-11-25T10:00:00Z", "https://example.com/some/long/path/name.html"} {
		if spans := moltgate.FindCredentials(plain); len(spans) != 0 {
			t.Errorf("%.40q: spans %v", plain, spans)
		}
	}
}

// BenchmarkFindCredentials scans a 4 KB reply of long numbers (words the
// scan must look at) and 4 KB of prose.
func BenchmarkFindCredentials(b *testing.B) {
	for name, text := range map[string]string{
		"numbers": strings.Repeat("1795630000123456789 ", 200),
		"prose":   strings.Repeat("Sure, I have added milk and eggs to the shopping list. ", 73),
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				moltgate.FindCredentials(text)
			}
		})
	}
}

func TestRedactCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"opened https://bob:s3cretpass@example.com/x": "opened https://bob:" + moltgate.RedactedMarker + "@example.com/x",
		"the key is sk-ant-api03-abcdefghijklmnop.":   "the key is " + moltgate.RedactedMarker + ".",
		"mail bob@example.com at https://example.com": "mail bob@example.com at https://example.com",
		// A Telegram token in a Bot API path: the run starts at "bot".
		"GET https://api.telegram.org/bot123456789:AAEabcdefghijklmnopqrstuvwxyz012345/getMe": "GET https://api.telegram.org/" + moltgate.RedactedMarker + "/getMe",
		"": "",
	} {
		if got := moltgate.RedactCredentials(in); got != want {
			t.Errorf("RedactCredentials(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestScopesAllow(t *testing.T) {
	for _, tc := range []struct {
		held []string
		want string
		ok   bool
	}{
		{[]string{moltgate.ScopeAdmin}, moltgate.ScopePairing, true},
		{[]string{moltgate.ScopeWrite}, moltgate.ScopeRead, true},
		{[]string{moltgate.ScopeRead}, moltgate.ScopeWrite, false},
		{[]string{moltgate.ScopePairing}, moltgate.ScopeAdmin, false},
		{nil, "", true},
	} {
		if got := moltgate.ScopesAllow(tc.held, tc.want); got != tc.ok {
			t.Errorf("%v allows %s = %v", tc.held, tc.want, got)
		}
	}
	if m := moltgate.MissingScopes([]string{moltgate.ScopePairing}, []string{moltgate.ScopeRead, moltgate.ScopePairing}); len(m) != 1 || m[0] != moltgate.ScopeRead {
		t.Fatalf("missing = %v", m)
	}
}

// A URL's issue never repeats its password, and what cannot be checked
// (the marker a client sends back for a sealed URL, a sealed value, an
// ${ENV} reference) is not an issue.
func TestParseConfig_URLs(t *testing.T) {
	doc := func(baseURL, apiRoot string) json.RawMessage {
		b, _ := json.Marshal(map[string]any{
			"models":   map[string]any{"providers": map[string]any{"x": map[string]any{"api": "openai-completions", "baseUrl": baseURL}}},
			"channels": map[string]any{"telegram": map[string]any{"apiRoot": apiRoot}},
		})
		return b
	}
	for _, fine := range []string{"", moltgate.RedactedMarker, moltgate.SealedPrefix + "0123abcd:AAAA", "${PROXY_URL}", "https://proxy.example/v1"} {
		if _, issues := moltgate.ParseConfig(doc(fine, fine)); len(issues) != 0 {
			t.Errorf("%q: %v", fine, issues)
		}
	}
	for bad, want := range map[string]string{
		"htps://user:hunter2secret@proxy.example/v1": `"htps://user:` + moltgate.RedactedMarker + `@proxy.example/v1" is not an http(s) URL`,
		"https://user:hunter2secret@host/%zz":        "the value is not an http(s) URL",
		"hunter2secret":                              `"hunter2secret" is not an http(s) URL`,
	} {
		_, issues := moltgate.ParseConfig(doc(bad, bad))
		if len(issues) != 2 || issues[0].Path != "channels.telegram.apiRoot" || issues[1].Path != "models.providers.x.baseUrl" {
			t.Fatalf("%q: issues %v, want apiRoot and baseUrl", bad, issues)
		}
		for _, is := range issues {
			if is.Message != want {
				t.Errorf("%q at %s: %q, want %q", bad, is.Path, is.Message, want)
			}
		}
	}
}
