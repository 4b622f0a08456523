package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/internal/fakellm"
	"github.com/moltgate/moltgate/secrets"
)

// A fallback answers only when the primary failed for a reason a fallback
// can fix (429, 5xx); a 4xx from the primary is reported as it is.
func TestRunner_Fallbacks(t *testing.T) {
	for _, tc := range []struct {
		status   int
		fallback bool
	}{{500, true}, {429, true}, {529, true}, {401, false}, {403, false}, {404, false}, {400, false}} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			primary, fallback := fakellm.NewAnthropic(t), fakellm.NewOpenAI(t)
			primary.Script(fakellm.Step{Status: tc.status, RetryAfter: "0"})
			fallback.Script(fakellm.Step{Tokens: fakellm.Tokens("Fallback here.")})
			r := newRunner(
				Choice{Name: "claude/primary", Model: "primary", Provider: NewAnthropic("sk-ant-test", primary.URL, nil, nil)},
				Choice{Name: "gpt/backup", Model: "backup", Provider: NewOpenAI("sk-test", fallback.URL, nil, nil)})
			rec := newRecorder()
			runOn(t, r, rec, moltgate.QueuedRun{})
			if !tc.fallback {
				if len(fallback.Requests()) != 0 || len(rec.replies) != 0 || len(rec.injected) != 0 {
					t.Fatalf("a %d was hidden behind the fallback: replies %+v", tc.status, rec.replies)
				}
				if !strings.HasPrefix(rec.finished[0], moltgate.RunFailed+":the model failed: ") || !strings.Contains(rec.finished[0], fmt.Sprint(tc.status)) {
					t.Fatalf("finished %v", rec.finished)
				}
				return
			}
			if len(rec.replies) != 1 || rec.replies[0].Model != "gpt/backup" || rec.replies[0].Content != "Fallback here." {
				t.Fatalf("replies %+v finished %v", rec.replies, rec.finished)
			}
			want := fmt.Sprintf("claude/primary failed (%s); gpt/backup answered instead.", strings.TrimSpace(fmt.Sprintf("HTTP %d %s", tc.status, http.StatusText(tc.status))))
			if len(rec.injected) != 1 || rec.injected[0].Role != "system" || rec.injected[0].Content != want {
				t.Fatalf("note %+v, want %q", rec.injected, want)
			}
			if n := len(primary.Requests()); n != 1+providerRetries {
				t.Fatalf("primary asked %d times, want 1 + %d retries", n, providerRetries)
			}
		})
	}
}

// Once text has streamed, a failing model is not silently replaced.
func TestRunner_NoSwitchAfterText(t *testing.T) {
	primary, fallback := fakellm.NewOpenAI(t), fakellm.NewOpenAI(t)
	primary.Script(fakellm.Step{Tokens: fakellm.Tokens("one two three four"), CutAfter: 2})
	r := newRunner(
		Choice{Name: "a/primary", Model: "primary", Provider: NewOpenAI("sk-test", primary.URL, nil, nil)},
		Choice{Name: "b/backup", Model: "backup", Provider: NewOpenAI("sk-test", fallback.URL, nil, nil)})
	rec := newRecorder()
	runOn(t, r, rec, moltgate.QueuedRun{})
	if len(fallback.Requests()) != 0 || !strings.HasPrefix(rec.finished[0], moltgate.RunFailed+":") {
		t.Fatalf("fallback asked %d times, finished %v", len(fallback.Requests()), rec.finished)
	}
}

func TestFallbackReason(t *testing.T) {
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"Canceled":   {context.Canceled, false},
		"Plain":      {errors.New("boom"), false},
		"Incomplete": {errIncomplete, true},
		"EOF":        {fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		"Refused":    {&url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}, true},
		"BadScheme":  {&url.Error{Op: "Post", URL: "ftp://x", Err: errors.New("unsupported protocol scheme")}, false},
	} {
		if _, got := fallbackReason(tc.err); got != tc.want {
			t.Errorf("%s: fallback %v, want %v", name, got, tc.want)
		}
	}
}

// gatewayClient dials the fake whatever host a request names: the fake
// stands in for gateway.ai.cloudflare.com.
func gatewayClient(fake *fakellm.Server) *http.Client {
	addr := strings.TrimPrefix(fake.URL, "http://")
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}}
}

// Cloudflare AI Gateway URLs choose the wire API by their upstream: the
// guides' DeepSeek setup says "anthropic-messages" and must still reach
// …/deepseek/chat/completions; …/anthropic speaks Anthropic's API even
// when the config says otherwise.
func TestResolve_AIGatewayPicksTheAPI(t *testing.T) {
	for _, tc := range []struct {
		name, api, upstream, wantAPI, wantPath string
		fake                                   func(testing.TB) *fakellm.Server
	}{
		{"DeepSeekSaidAnthropic", moltgate.APIAnthropicMessages, "deepseek", moltgate.APIOpenAICompletions, "/v1/acct/gw/deepseek/chat/completions", fakellm.NewOpenAI},
		{"OpenRouter", "", "openrouter", moltgate.APIOpenAICompletions, "/v1/acct/gw/openrouter/chat/completions", fakellm.NewOpenAI},
		{"WorkersAI", moltgate.APIOpenAICompletions, "workers-ai", moltgate.APIOpenAICompletions, "/v1/acct/gw/workers-ai/v1/chat/completions", fakellm.NewOpenAI},
		{"AnthropicSaidOpenAI", moltgate.APIOpenAICompletions, "anthropic", moltgate.APIAnthropicMessages, "/v1/acct/gw/anthropic/v1/messages", fakellm.NewAnthropic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := tc.fake(t)
			doc := fmt.Sprintf(`{"models":{"providers":{"gw":{"api":%q,"baseUrl":"http://gateway.ai.cloudflare.com/v1/acct/gw/%s","apiKey":"${GW_KEY}",
				"models":[{"id":"m","contextWindow":64000,"maxTokens":8000}]}}},"agents":{"defaults":{"model":"gw/m"}}}`, tc.api, tc.upstream)
			var cfg moltgate.Config
			if err := json.Unmarshal([]byte(doc), &cfg); err != nil {
				t.Fatal(err)
			}
			env := func(k string) string { return map[string]string{"GW_KEY": "sk-gateway-key"}[k] }
			res := resolve(cfg, env, secrets.Resolver{Getenv: env}, gatewayClient(fake))
			if len(res.Choices) != 1 || res.Choices[0].API != tc.wantAPI || res.Choices[0].Entry.MaxTokens != 8000 {
				t.Fatalf("choices %+v problems %v", res.Choices, res.Problems)
			}
			reply, err := res.Choices[0].Provider.Stream(context.Background(), Request{Model: "m", MaxTokens: 100, Messages: []Message{{Role: "user", Text: "hi"}}}, func(string) {})
			if err != nil || reply.Text != "Hello from the fake model." {
				t.Fatalf("reply %q err %v", reply.Text, err)
			}
			if paths := fake.Paths(); len(paths) != 1 || paths[0] != tc.wantPath {
				t.Fatalf("requested %v, want %s", paths, tc.wantPath)
			}
		})
	}
}

func TestAIGatewayAPI(t *testing.T) {
	for raw, want := range map[string]string{
		"https://gateway.ai.cloudflare.com/v1/a/g/deepseek":       moltgate.APIOpenAICompletions + " https://gateway.ai.cloudflare.com/v1/a/g/deepseek",
		"https://gateway.ai.cloudflare.com/v1/a/g/anthropic/":     moltgate.APIAnthropicMessages + " https://gateway.ai.cloudflare.com/v1/a/g/anthropic",
		"https://gateway.ai.cloudflare.com/v1/a/g/compat":         moltgate.APIOpenAICompletions + " https://gateway.ai.cloudflare.com/v1/a/g/compat",
		"https://gateway.ai.cloudflare.com/v1/a/g/mistral":        moltgate.APIOpenAICompletions + " https://gateway.ai.cloudflare.com/v1/a/g/mistral/v1",
		"https://gateway.ai.cloudflare.com/v1/a/g/workers-ai/v1":  moltgate.APIOpenAICompletions + " https://gateway.ai.cloudflare.com/v1/a/g/workers-ai/v1",
		"https://GATEWAY.ai.cloudflare.com/v1/a/g/groq":           moltgate.APIOpenAICompletions + " https://GATEWAY.ai.cloudflare.com/v1/a/g/groq",
		"https://gateway.ai.cloudflare.com/v1/a/g":                "not a gateway URL",
		"https://api.deepseek.com/v1":                             "not a gateway URL",
		"https://evil.example/gateway.ai.cloudflare.com/v1/a/g/x": "not a gateway URL",
	} {
		api, base, ok := aiGatewayAPI(raw)
		got := api + " " + base
		if !ok {
			got = "not a gateway URL"
		}
		if got != want {
			t.Errorf("%s: got %q, want %q", raw, got, want)
		}
	}
}

// A provider's error is shown as its first line, cut at 300 characters,
// never inside one.
func TestSafeError(t *testing.T) {
	long := strings.Repeat("é", 400)
	for err, want := range map[error]string{
		errors.New("429 Too Many Requests\n{\"body\":1}"): "429 Too Many Requests",
		errors.New(long + "\nmore"):                       strings.Repeat("é", 300) + "…",
		errors.New("  padded  "):                          "padded",
		nil:                                               "unknown error",
	} {
		if got := safeError(err); got != want || !utf8.ValidString(got) {
			t.Errorf("safeError(%v):\n got %q\nwant %q", err, got, want)
		}
	}
}
