package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/internal/fakellm"
)

type staticWorkspace []moltgate.WorkspaceFile

func (w staticWorkspace) WorkspaceFiles() []moltgate.WorkspaceFile { return w }

// A model calls the browser twice (navigate, screenshot) and then answers,
// through both wire formats, with and without image input: the tool runs
// in one tab, the results go back in the provider's shape (the screenshot
// as an image only for a model that reads images), each call is recorded
// and announced, and the final reply is recorded.
func TestRunner_BrowserToolLoop(t *testing.T) {
	for _, pf := range providerFakes {
		for _, images := range []bool{true, false} {
			name := pf.name + "/TextOnly"
			if images {
				name = pf.name + "/Images"
			}
			t.Run(name, func(t *testing.T) {
				s := pf.server(t)
				s.Script(
					fakellm.Step{Tokens: fakellm.Tokens("Let me look."), ToolCalls: []fakellm.ToolCall{
						{ID: "call_1", Name: "browser", Input: `{"action":"navigate","url":"https://example.com/cats"}`},
						{ID: "call_2", Name: "browser", Input: `{"action":"screenshot"}`}}},
					fakellm.Step{Tokens: fakellm.Tokens("It shows a cat.")},
				)
				entry := moltgate.ModelEntry{ID: "m", MaxTokens: 1234}
				if images {
					entry.Input = []string{"text", "image"}
				}
				b := &fakeBrowser{}
				r := newRunner(Choice{Name: "fake/m", Model: "m", Provider: pf.make(s.URL), Entry: entry})
				r.Tools = []Tool{NewBrowserTool(b, nil), NewConfigTool(&fakeConfig{}, &fakeConfig{})}
				r.Workspace = staticWorkspace{{Path: "AGENTS.md", Content: "Always greet with 'Ahoy'."}}
				rec := newRecorder()
				runOn(t, r, rec, moltgate.QueuedRun{})

				if opened, closed, actions := b.state(); opened != 1 || closed != 1 || strings.Join(actions, "|") != "navigate https://example.com/cats|screenshot" {
					t.Fatalf("browser: opened %d closed %d actions %q", opened, closed, actions)
				}
				reqs := s.Requests()
				if len(reqs) != 2 {
					t.Fatalf("%d requests, want 2", len(reqs))
				}
				first, second := reqs[0], reqs[1]
				if names := toolNames(first); !slices.Contains(names, "browser") || slices.Contains(names, "gateway_config") {
					t.Fatalf("offered %v: browser, and no gateway_config outside the owner's runs", names)
				}
				if sys := systemOf(first); !strings.Contains(sys, "Always greet with 'Ahoy'.") || !strings.Contains(sys, "browser:") {
					t.Fatalf("system prompt lacks the workspace or the tools: %q", sys)
				}
				maxKey := map[string]string{"Anthropic": "max_tokens", "OpenAI": "max_completion_tokens"}[pf.name]
				if first[maxKey] != float64(1234) {
					t.Fatalf("%s = %v, want the entry's 1234", maxKey, first[maxKey])
				}
				checkToolResults(t, pf.name, second, images)

				events := rec.toolEventsOnly()
				rec.mu.Lock()
				defer rec.mu.Unlock()
				if len(rec.tools) != 2 || rec.tools[0].Status != moltgate.ToolOK || rec.tools[1].Status != moltgate.ToolOK {
					t.Fatalf("recorded tool calls %+v", rec.tools)
				}
				if rec.tools[0].Summary != "opened https://example.com/cats" || string(rec.tools[0].Input) != `{"action":"navigate","url":"https://example.com/cats"}` {
					t.Fatalf("first call recorded as %+v (input %s)", rec.tools[0], rec.tools[0].Input)
				}
				if img := rec.tools[1].Image; img == nil || img.MimeType != "image/png" || img.Width != 320 || len(img.Data) == 0 {
					t.Fatalf("screenshot recorded as %+v", img)
				}
				want := []string{"tool start call_1 browser ", "tool result call_1 browser ok", "tool start call_2 browser ", "tool result call_2 browser ok", "done completed"}
				if got := events; strings.Join(got, "|") != strings.Join(want, "|") || !rec.seqOrdered {
					t.Fatalf("sink saw %q (seq ordered %v), want %q", got, rec.seqOrdered, want)
				}
				if rec.events[0] != "delta" {
					t.Fatalf("the text before the tool calls should stream first: %q", rec.events)
				}
				if len(rec.replies) != 1 || rec.replies[0].Content != "Let me look.\n\nIt shows a cat." || rec.replies[0].Model != "fake/m" {
					t.Fatalf("reply %+v", rec.replies)
				}
			})
		}
	}
}

// checkToolResults checks the second request: the assistant's tool calls
// replayed and their results, in the provider's wire format.
func checkToolResults(t *testing.T, provider string, body map[string]any, images bool) {
	t.Helper()
	msgs, _ := body["messages"].([]any)
	switch provider {
	case "Anthropic":
		// user "hi", assistant [text, tool_use, tool_use], user [tool_result, tool_result]
		if len(msgs) != 3 {
			t.Fatalf("messages %s", mustJSON(msgs))
		}
		if dig(msgs, 1, "role") != "assistant" || dig(msgs, 1, "content", 1, "type") != "tool_use" || dig(msgs, 1, "content", 2, "id") != "call_2" ||
			dig(msgs, 1, "content", 1, "input", "url") != "https://example.com/cats" {
			t.Fatalf("assistant turn %s", mustJSON(dig(msgs, 1)))
		}
		results := dig(msgs, 2, "content").([]any)
		if dig(msgs, 2, "role") != "user" || len(results) != 2 || dig(results, 0, "type") != "tool_result" || dig(results, 0, "tool_use_id") != "call_1" ||
			dig(results, 1, "tool_use_id") != "call_2" {
			t.Fatalf("tool results %s", mustJSON(results))
		}
		shot := dig(results, 1, "content").([]any)
		if images {
			if len(shot) != 2 || dig(shot, 1, "type") != "image" || dig(shot, 1, "source", "type") != "base64" || dig(shot, 1, "source", "media_type") != "image/png" {
				t.Fatalf("screenshot result %s, want text and an image block", mustJSON(shot))
			}
			checkPNG(t, dig(shot, 1, "source", "data").(string))
		} else if len(shot) != 1 || !strings.Contains(dig(shot, 0, "text").(string), NoImageNote) {
			t.Fatalf("screenshot result %s, want only a text saying a screenshot was taken", mustJSON(shot))
		}
	case "OpenAI":
		// system, user, assistant{tool_calls}, tool, tool [, user with the image]
		want := 5
		if images {
			want = 6
		}
		if len(msgs) != want {
			t.Fatalf("%d messages, want %d: %s", len(msgs), want, mustJSON(msgs))
		}
		if dig(msgs, 2, "role") != "assistant" || dig(msgs, 2, "tool_calls", 0, "id") != "call_1" || dig(msgs, 2, "tool_calls", 1, "function", "name") != "browser" ||
			dig(msgs, 2, "tool_calls", 1, "function", "arguments") != `{"action":"screenshot"}` {
			t.Fatalf("assistant message %s", mustJSON(dig(msgs, 2)))
		}
		if dig(msgs, 3, "role") != "tool" || dig(msgs, 3, "tool_call_id") != "call_1" || dig(msgs, 4, "tool_call_id") != "call_2" {
			t.Fatalf("tool messages %s", mustJSON(msgs[3:]))
		}
		text := mustJSON(dig(msgs, 4, "content"))
		if images {
			url, _ := dig(msgs, 5, "content", 1, "image_url", "url").(string)
			if dig(msgs, 5, "role") != "user" || !strings.HasPrefix(url, "data:image/png;base64,") {
				t.Fatalf("image message %s", mustJSON(dig(msgs, 5)))
			}
			checkPNG(t, strings.TrimPrefix(url, "data:image/png;base64,"))
		} else if !strings.Contains(text, "cannot view images") {
			t.Fatalf("screenshot result %s, want a text saying a screenshot was taken", text)
		}
	}
}

func checkPNG(t *testing.T, b64 string) {
	t.Helper()
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || !strings.HasPrefix(string(data), "\x89PNG") {
		t.Fatalf("the image sent is not the PNG taken (%v)", err)
	}
}

// fakeConfig is a ConfigQueries and ConfigService that remembers patches.
type fakeConfig struct {
	mu      sync.Mutex
	doc     json.RawMessage
	hash    string
	patches []json.RawMessage
	bases   []string
	metas   []moltgate.Meta
}

func (c *fakeConfig) CurrentConfig() (json.RawMessage, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.doc, c.hash
}
func (c *fakeConfig) ConfigHistory() []moltgate.ConfigVersion { return nil }
func (c *fakeConfig) ApplyConfig(context.Context, json.RawMessage, string, moltgate.Meta) (moltgate.ConfigResult, error) {
	return moltgate.ConfigResult{}, moltgate.Errorf(moltgate.EINTERNAL, "not used")
}
func (c *fakeConfig) PatchConfig(_ context.Context, patch json.RawMessage, base string, meta moltgate.Meta) (moltgate.ConfigResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.patches, c.bases, c.metas = append(c.patches, patch), append(c.bases, base), append(c.metas, meta)
	if c.hash != "" && base != c.hash {
		return moltgate.ConfigResult{}, &moltgate.Error{Code: moltgate.ECONFLICT, Message: "config changed since it was read: reload it and apply your change again"}
	}
	if strings.Contains(string(patch), "not-a-url") {
		return moltgate.ConfigResult{}, &moltgate.Error{Code: moltgate.EINVALID, Message: `invalid config: models.providers.x.baseUrl: "not-a-url" is not an http(s) URL`}
	}
	c.hash = fmt.Sprintf("hash%d", len(c.patches)+1)
	return moltgate.ConfigResult{Hash: c.hash, Changed: true}, nil
}

// edit is the owner changing the config (in the admin UI, say).
func (c *fakeConfig) edit(hash string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hash = hash
}
func (c *fakeConfig) RevertConfig(context.Context, int64, string, moltgate.Meta) (moltgate.ConfigResult, error) {
	return moltgate.ConfigResult{}, moltgate.Errorf(moltgate.EINTERNAL, "not used")
}
func (c *fakeConfig) CheckConfig(context.Context, json.RawMessage) ([]moltgate.ConfigIssue, []moltgate.ConfigIssue) {
	return nil, nil
}

const telegramToken = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw9"

// gateway_config is not offered outside the owner's runs, and a call to
// it anyway is refused without touching the config.
func TestRunner_ConfigToolRefusedForNonOwner(t *testing.T) {
	s := fakellm.NewAnthropic(t)
	s.Script(
		fakellm.Step{ToolCalls: []fakellm.ToolCall{{ID: "toolu_1", Name: "gateway_config", Input: `{"action":"patch","patch":{"channels":{"telegram":{"dmPolicy":"open"}}}}`}}},
		fakellm.Step{Tokens: fakellm.Tokens("I cannot do that.")},
	)
	cfg := &fakeConfig{doc: json.RawMessage(`{}`), hash: "hash1"}
	r := newRunner(Choice{Name: "fake/m", Model: "m", Provider: NewAnthropic("sk-ant-test", s.URL, nil, nil)})
	r.Tools = []Tool{NewConfigTool(cfg, cfg), NewWebFetchTool(nil)}
	rec := newRecorder()
	runOn(t, r, rec, moltgate.QueuedRun{Owner: false})

	reqs := s.Requests()
	if names := toolNames(reqs[0]); slices.Contains(names, "gateway_config") || !slices.Contains(names, "web_fetch") {
		t.Fatalf("a stranger's run was offered %v", names)
	}
	if len(cfg.patches) != 0 {
		t.Fatalf("the config was patched: %s", cfg.patches)
	}
	if len(rec.tools) != 1 || rec.tools[0].Status != moltgate.ToolRefused || !strings.Contains(rec.tools[0].Error, "only available to the owner") {
		t.Fatalf("recorded %+v", rec.tools)
	}
	result := dig(reqs[1], "messages", -1, "content", 0)
	if dig(result, "is_error") != true || !strings.Contains(mustJSON(result), "refused") {
		t.Fatalf("the model was told %s", mustJSON(result))
	}
	if rec.finished[0] != moltgate.RunCompleted+":" {
		t.Fatalf("finished %v", rec.finished)
	}
}

// In the owner's run gateway_config patches the config it read (its
// hash), as the agent; the token in the patch reaches PatchConfig (which
// seals it) but neither the recorded input nor the summary.
func TestRunner_ConfigToolPatchesForOwner(t *testing.T) {
	s := fakellm.NewOpenAI(t)
	patch := `{"action":"patch","patch":{"channels":{"telegram":{"botToken":"` + telegramToken + `","enabled":true}}}}`
	s.Script(
		fakellm.Step{ToolCalls: []fakellm.ToolCall{{ID: "call_get", Name: "gateway_config", Input: `{"action":"get"}`}, {ID: "call_patch", Name: "gateway_config", Input: patch}}},
		fakellm.Step{Tokens: fakellm.Tokens("Telegram is set up.")},
	)
	cfg := &fakeConfig{doc: json.RawMessage(`{"channels":{"discord":{"token":"moltgate:sealed:v1:0123abcd:c2VjcmV0"}}}`), hash: "hash1"}
	r := newRunner(Choice{Name: "fake/m", Model: "m", Provider: NewOpenAI("sk-test", s.URL, nil, nil)})
	r.Tools = []Tool{NewConfigTool(cfg, cfg)}
	rec := newRecorder()
	runOn(t, r, rec, moltgate.QueuedRun{Owner: true})

	if names := toolNames(s.Requests()[0]); !slices.Contains(names, "gateway_config") {
		t.Fatalf("the owner's run was offered %v", names)
	}
	if len(cfg.patches) != 1 || !strings.Contains(string(cfg.patches[0]), telegramToken) || cfg.bases[0] != "hash1" ||
		cfg.metas[0].Actor != "agent" || cfg.metas[0].Source != moltgate.SourceAgent {
		t.Fatalf("PatchConfig got %s base %v meta %+v", cfg.patches, cfg.bases, cfg.metas)
	}
	got := dig(s.Requests()[1], "messages")
	if get := mustJSON(dig(got, 3, "content")); !strings.Contains(get, moltgate.RedactedMarker) || strings.Contains(get, "c2VjcmV0") {
		t.Fatalf("get showed the model %s: sealed values must be redacted", get)
	}
	if len(rec.tools) != 2 || rec.tools[1].Status != moltgate.ToolOK {
		t.Fatalf("recorded %+v", rec.tools)
	}
	for _, call := range append(append([]moltgate.ToolCall(nil), rec.tools...), rec.toolEvents...) {
		if strings.Contains(string(call.Input), telegramToken) || strings.Contains(call.Summary, telegramToken) || strings.Contains(call.Summary, "AAHdq") {
			t.Fatalf("the token leaked into %+v (input %s)", call, call.Input)
		}
	}
	if !strings.Contains(string(rec.tools[1].Input), moltgate.RedactedMarker) || rec.tools[1].Summary != "patched the config: channels.telegram.botToken, channels.telegram.enabled" {
		t.Fatalf("recorded input %s summary %q", rec.tools[1].Input, rec.tools[1].Summary)
	}
}

// A patch the config service refuses is a failed call whose error says why.
func TestConfigTool_RefusedPatch(t *testing.T) {
	cfg := &fakeConfig{doc: json.RawMessage(`{}`), hash: "h"}
	tool := NewConfigTool(cfg, cfg)
	owner := RunInfo{Owner: true, RunID: "r"}
	for name, tc := range map[string]struct{ input, want string }{
		"InvalidConfig": {`{"action":"patch","patch":{"models":{"providers":{"x":{"baseUrl":"not-a-url"}}}}}`, "is not an http(s) URL"},
		"NotAnObject":   {`{"action":"patch","patch":[1,2]}`, "patch must be a JSON object"},
		"NoPatch":       {`{"action":"patch"}`, "patch must be a JSON object"},
		"BadAction":     {`{"action":"delete"}`, `unknown action "delete"`},
		"BadJSON":       {`{"action":`, "not a valid JSON object"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tool.Run(context.Background(), Call{RunInfo: owner, Input: json.RawMessage(tc.input), Scope: newRunScope()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := tool.Run(context.Background(), Call{RunInfo: RunInfo{}, Input: json.RawMessage(`{"action":"get"}`)}); !isRefused(err) {
		t.Fatalf("a stranger's direct call: %v", err)
	}
}

// A patch is checked against the config the model read: an edit the owner
// made after the model's get is not overwritten, and the model is told to
// read again. The hash of the model's own patch, or one it names, is the
// base of the next.
func TestConfigTool_PatchAfterTheOwnersEdit(t *testing.T) {
	cfg := &fakeConfig{doc: json.RawMessage(`{}`), hash: "hash1"}
	tool := NewConfigTool(cfg, cfg)
	scope := newRunScope()
	call := func(input string) (ToolResult, error) {
		return tool.Run(context.Background(), Call{RunInfo: RunInfo{Owner: true, RunID: "r"}, Input: json.RawMessage(input), Scope: scope})
	}
	const patch = `{"action":"patch","patch":{"agents":{"defaults":{"model":"a/b"}}}}`
	if _, err := call(`{"action":"get"}`); err != nil {
		t.Fatal(err)
	}
	cfg.edit("owner1")
	if _, err := call(patch); err == nil || !strings.Contains(err.Error(), "the config changed meanwhile: read it again, then patch") {
		t.Fatalf("a patch over the owner's edit: %v", err)
	}
	if _, err := call(`{"action":"get"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := call(patch); err != nil {
		t.Fatalf("a patch after reading again: %v", err)
	}
	if _, err := call(patch); err != nil {
		t.Fatalf("a second patch, on the first: %v", err)
	}
	if _, err := call(`{"action":"patch","baseHash":"hash1","patch":{"x":1}}`); err == nil {
		t.Fatal("a patch for an old hash it named was applied")
	}
	if want := []string{"hash1", "owner1", "hash3", "hash1"}; strings.Join(cfg.bases, " ") != strings.Join(want, " ") {
		t.Fatalf("bases %v, want %v", cfg.bases, want)
	}
}

// loopTool is a tool that always succeeds.
type loopTool struct{}

func (loopTool) Name() string            { return "again" }
func (loopTool) Description() string     { return "Does nothing." }
func (loopTool) Schema() json.RawMessage { return json.RawMessage(`{"type":"object","properties":{}}`) }
func (loopTool) Offered(RunInfo) error   { return nil }
func (loopTool) Run(context.Context, Call) (ToolResult, error) {
	return ToolResult{Text: "done"}, nil
}

// A model that never stops calling tools is stopped after the bound.
func TestRunner_ToolLoopIsBounded(t *testing.T) {
	s := fakellm.NewAnthropic(t)
	s.Script(fakellm.Step{ToolCalls: []fakellm.ToolCall{{ID: "toolu_x", Name: "again", Input: `{}`}}}) // repeats
	r := newRunner(Choice{Name: "fake/m", Model: "m", Provider: NewAnthropic("sk-ant-test", s.URL, nil, nil)})
	r.Tools = []Tool{loopTool{}}
	rec := newRecorder()
	runOn(t, r, rec, moltgate.QueuedRun{})
	if n := len(s.Requests()); n != DefaultToolRounds+1 {
		t.Fatalf("%d requests, want %d", n, DefaultToolRounds+1)
	}
	if len(rec.tools) != DefaultToolRounds || rec.finished[0] != moltgate.RunFailed+":the model kept calling tools: stopped after 10 rounds of tool calls" {
		t.Fatalf("%d tool calls, finished %v", len(rec.tools), rec.finished)
	}
}

// Aborting a run while a tool runs ends it as aborted: the tool call is
// recorded as cut short, the text streamed before stays, the tab closes.
func TestRunner_AbortDuringToolCall(t *testing.T) {
	s := fakellm.NewOpenAI(t)
	s.Script(
		fakellm.Step{Tokens: fakellm.Tokens("Opening it."), ToolCalls: []fakellm.ToolCall{{ID: "call_1", Name: "browser", Input: `{"action":"navigate","url":"https://slow.example/"}`}}},
		fakellm.Step{Tokens: fakellm.Tokens("never sent")},
	)
	b := &fakeBrowser{blocking: make(chan struct{})}
	r := newRunner(Choice{Name: "fake/m", Model: "m", Provider: NewOpenAI("sk-test", s.URL, nil, nil)})
	r.Tools = []Tool{NewBrowserTool(b, nil)}
	rec := newRecorder()
	r.Chat, r.Sink = rec, rec
	if err := r.Enqueue(moltgate.QueuedRun{SessionKey: "s", RunID: "run1"}); err != nil {
		t.Fatal(err)
	}
	<-b.blocking
	if n := r.Abort("s", "run1"); n != 1 {
		t.Fatalf("aborted %d runs", n)
	}
	waitDone(t, rec)
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rec.finished[0] != moltgate.RunAborted+":" || len(rec.replies) != 1 || rec.replies[0].Content != "Opening it." {
		t.Fatalf("finished %v replies %+v", rec.finished, rec.replies)
	}
	if len(rec.tools) != 1 || rec.tools[0].Status != moltgate.ToolError || rec.tools[0].Error != "the run was aborted" {
		t.Fatalf("recorded %+v", rec.tools)
	}
	if _, closed, _ := b.state(); closed != 1 {
		t.Fatal("the tab was not closed")
	}
	if n := len(s.Requests()); n != 1 {
		t.Fatalf("%d requests after the abort", n)
	}
}

// A call to a tool nobody offered is an error the model is told about;
// the run goes on.
func TestRunner_UnknownTool(t *testing.T) {
	s := fakellm.NewAnthropic(t)
	s.Script(fakellm.Step{ToolCalls: []fakellm.ToolCall{{ID: "toolu_1", Name: "exec", Input: `{"cmd":"rm -rf /"}`}}}, fakellm.Step{Tokens: fakellm.Tokens("Sorry.")})
	r := newRunner(Choice{Name: "fake/m", Model: "m", Provider: NewAnthropic("sk-ant-test", s.URL, nil, nil)})
	r.Tools = []Tool{loopTool{}}
	rec := newRecorder()
	runOn(t, r, rec, moltgate.QueuedRun{})
	if len(rec.tools) != 1 || rec.tools[0].Status != moltgate.ToolError || !strings.Contains(rec.tools[0].Error, `there is no tool named "exec" (the tools are: again)`) {
		t.Fatalf("recorded %+v", rec.tools)
	}
	if rec.finished[0] != moltgate.RunCompleted+":" || rec.replies[0].Content != "Sorry." {
		t.Fatalf("finished %v replies %+v", rec.finished, rec.replies)
	}
}

// web_fetch of a loopback address through the runner is recorded as
// refused, with the reason.
func TestRunner_WebFetchRefusedIsRecorded(t *testing.T) {
	s := fakellm.NewAnthropic(t)
	s.Script(fakellm.Step{ToolCalls: []fakellm.ToolCall{{ID: "toolu_1", Name: "web_fetch", Input: `{"url":"http://127.0.0.1:8080/_admin/"}`}}}, fakellm.Step{Tokens: fakellm.Tokens("Blocked.")})
	r := newRunner(Choice{Name: "fake/m", Model: "m", Provider: NewAnthropic("sk-ant-test", s.URL, nil, nil)})
	r.Tools = []Tool{NewWebFetchTool(nil)}
	rec := newRecorder()
	runOn(t, r, rec, moltgate.QueuedRun{Owner: true})
	if len(rec.tools) != 1 || rec.tools[0].Status != moltgate.ToolRefused || !strings.Contains(rec.tools[0].Error, "127.0.0.1 is a loopback address") {
		t.Fatalf("recorded %+v", rec.tools)
	}
}

// What the browser typed (a password, say) and a password in a URL reach
// neither the recorded call nor what clients are shown.
func TestRunner_BrowserSecretsAreNotRecorded(t *testing.T) {
	s := fakellm.NewAnthropic(t)
	s.Script(fakellm.Step{ToolCalls: []fakellm.ToolCall{
		{ID: "toolu_1", Name: "browser", Input: `{"action":"navigate","url":"https://bob:s3cretpass@example.com/login"}`},
		{ID: "toolu_2", Name: "browser", Input: `{"action":"type","selector":"#pw","text":"hunter2"}`}}},
		fakellm.Step{Tokens: fakellm.Tokens("Logged in.")})
	r := newRunner(Choice{Name: "fake/m", Model: "m", Provider: NewAnthropic("sk-ant-test", s.URL, nil, nil)})
	r.Tools = []Tool{NewBrowserTool(&fakeBrowser{}, nil)}
	rec := newRecorder()
	runOn(t, r, rec, moltgate.QueuedRun{})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.tools) != 2 || rec.tools[1].Status != moltgate.ToolOK {
		t.Fatalf("recorded %+v", rec.tools)
	}
	recorded := mustJSON(rec.tools) + mustJSON(rec.toolEvents)
	for _, secret := range []string{"hunter2", "s3cretpass"} {
		if strings.Contains(recorded, secret) {
			t.Errorf("%q is in what was recorded or shown: %s", secret, recorded)
		}
	}
	if !strings.Contains(string(rec.tools[1].Input), `"(7 characters)"`) || !strings.Contains(rec.tools[0].Summary, "example.com/login") {
		t.Errorf("recorded too little to follow: %s", mustJSON(rec.tools))
	}
}

// Arguments that are not a JSON object are an error the model is told
// about, not a call with empty input.
func TestRunner_ToolInputMustBeAnObject(t *testing.T) {
	s := fakellm.NewOpenAI(t)
	s.Script(fakellm.Step{ToolCalls: []fakellm.ToolCall{{ID: "call_1", Name: "again", Input: `[1,2]`}, {ID: "call_2", Name: "again", Input: `{"x":`}}},
		fakellm.Step{Tokens: fakellm.Tokens("Oops.")})
	r := newRunner(Choice{Name: "fake/m", Model: "m", Provider: NewOpenAI("sk-test", s.URL, nil, nil)})
	r.Tools = []Tool{loopTool{}}
	rec := newRecorder()
	runOn(t, r, rec, moltgate.QueuedRun{})
	if len(rec.tools) != 2 || rec.tools[0].Error != "the input must be a JSON object" || rec.tools[1].Error != "the input must be a JSON object" {
		t.Fatalf("recorded %+v", rec.tools)
	}
	if string(rec.tools[0].Input) != `[1,2]` || string(rec.tools[1].Input) != `"{\"x\":"` {
		t.Fatalf("recorded inputs %s and %s", rec.tools[0].Input, rec.tools[1].Input)
	}
	// The calls are replayed to the provider with valid arguments.
	if args := dig(s.Requests()[1], "messages", 2, "tool_calls", 1, "function", "arguments"); args != "{}" {
		t.Fatalf("replayed arguments %v", args)
	}
}
