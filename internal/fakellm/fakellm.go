// Package fakellm runs loopback fakes of the Anthropic Messages and OpenAI
// Chat Completions streaming APIs that speak their real wire formats (SSE
// events and chunks), scripted per request: text, tool calls, and
// failures (error statuses with retry-after, a stream cut mid-way, a slow
// first token). They record every request, so tests can check what a
// client sent back (tool results, images).
package fakellm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Step is what the server does for one request.
type Step struct {
	Status     int           // non-zero: answer with this status and an error body
	RetryAfter string        // Retry-After header with Status
	Tokens     []string      // streamed text
	FirstDelay time.Duration // before the first token
	Delay      time.Duration // between tokens
	CutAfter   int           // >0: drop the connection after this many tokens
	// ToolCalls are streamed after the text; the reply then stops for
	// tool use (stop_reason "tool_use", finish_reason "tool_calls").
	ToolCalls []ToolCall
}

// ToolCall is a tool call a Step makes. Input is the JSON arguments,
// streamed in a few pieces as the real APIs do.
type ToolCall struct {
	ID    string
	Name  string
	Input string
}

// Server is a running fake. Requests consume Steps in order; the last step
// repeats.
type Server struct {
	URL string

	mu       sync.Mutex
	steps    []Step
	requests []map[string]any
	paths    []string
}

// Paths returns the URL paths requested so far.
func (s *Server) Paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.paths...)
}

func (s *Server) record(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paths = append(s.paths, r.URL.Path)
}

// Requests returns the decoded request bodies received so far.
func (s *Server) Requests() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.requests...)
}

// Script replaces the steps.
func (s *Server) Script(steps ...Step) {
	s.mu.Lock()
	s.steps = steps
	s.mu.Unlock()
}

func (s *Server) next(r *http.Request) Step {
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, body)
	st := s.steps[0]
	if len(s.steps) > 1 {
		s.steps = s.steps[1:]
	}
	return st
}

// pieces splits a tool call's JSON arguments into three chunks.
func pieces(input string) []string {
	if input == "" {
		return nil
	}
	n := len(input)
	return []string{input[:n/3], input[n/3 : 2*n/3], input[2*n/3:]}
}

// Tokens splits text into words (with their spaces) for a Step.
func Tokens(text string) []string { return strings.SplitAfter(text, " ") }

func start(tb testing.TB, h func(s *Server, w http.ResponseWriter, r *http.Request)) *Server {
	s := &Server{steps: []Step{{Tokens: Tokens("Hello from the fake model.")}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(s, w, r) }))
	tb.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// openStream starts a 200 event stream.
func openStream(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
}

// stream writes the step's tokens through write, flushing each, honouring
// the delays, the cut and the client going away.
func stream(w http.ResponseWriter, r *http.Request, st Step, write func(i int, token string)) bool {
	f := w.(http.Flusher)
	for i, tok := range st.Tokens {
		d := st.Delay
		if i == 0 {
			d = st.FirstDelay
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return false
		}
		if st.CutAfter > 0 && i == st.CutAfter {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
				}
			}
			return false
		}
		write(i, tok)
		f.Flush()
	}
	return true
}

func failWith(w http.ResponseWriter, st Step, body string) {
	if st.RetryAfter != "" {
		w.Header().Set("Retry-After", st.RetryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(st.Status)
	fmt.Fprint(w, body)
}

func sse(w http.ResponseWriter, event string, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
}

// NewAnthropic starts a fake of POST /v1/messages with stream: true (at
// any path ending so, such as an AI Gateway's …/anthropic/v1/messages).
func NewAnthropic(tb testing.TB) *Server {
	return start(tb, func(s *Server, w http.ResponseWriter, r *http.Request) {
		s.record(r)
		if !strings.HasSuffix(r.URL.Path, "/v1/messages") || r.Header.Get("X-Api-Key") == "" {
			w.Header().Set("Content-Type", "application/json")
			status, kind, msg := http.StatusUnauthorized, "authentication_error", "invalid x-api-key"
			if r.Header.Get("X-Api-Key") != "" {
				status, kind, msg = http.StatusNotFound, "not_found_error", "Not Found"
			}
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"type":"error","error":{"type":%q,"message":%q}}`, kind, msg)
			return
		}
		st := s.next(r)
		if st.Status != 0 {
			kind := map[int]string{400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
				429: "rate_limit_error", 529: "overloaded_error"}[st.Status]
			if kind == "" {
				kind = "api_error"
			}
			failWith(w, st, fmt.Sprintf(`{"type":"error","error":{"type":%q,"message":"fake failure %d"}}`, kind, st.Status))
			return
		}
		openStream(w)
		sse(w, "message_start", map[string]any{"type": "message_start", "message": map[string]any{"id": "msg_fake", "type": "message",
			"role": "assistant", "content": []any{}, "model": "claude-fake", "stop_reason": nil, "stop_sequence": nil,
			"usage": map[string]any{"input_tokens": 12, "output_tokens": 1}}})
		index := 0
		if len(st.Tokens) > 0 || len(st.ToolCalls) == 0 {
			sse(w, "content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}})
			if !stream(w, r, st, func(i int, tok string) {
				sse(w, "content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": tok}})
			}) {
				return
			}
			sse(w, "content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
			index++
		}
		for _, c := range st.ToolCalls {
			sse(w, "content_block_start", map[string]any{"type": "content_block_start", "index": index,
				"content_block": map[string]any{"type": "tool_use", "id": c.ID, "name": c.Name, "input": map[string]any{}}})
			for _, p := range pieces(c.Input) {
				sse(w, "content_block_delta", map[string]any{"type": "content_block_delta", "index": index, "delta": map[string]any{"type": "input_json_delta", "partial_json": p}})
			}
			sse(w, "content_block_stop", map[string]any{"type": "content_block_stop", "index": index})
			index++
		}
		stop := "end_turn"
		if len(st.ToolCalls) > 0 {
			stop = "tool_use"
		}
		sse(w, "message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop, "stop_sequence": nil},
			"usage": map[string]any{"output_tokens": len(st.Tokens) + len(st.ToolCalls)}})
		sse(w, "message_stop", map[string]any{"type": "message_stop"})
	})
}

// NewOpenAI starts a fake of POST …/chat/completions with stream: true.
func NewOpenAI(tb testing.TB) *Server {
	return start(tb, func(s *Server, w http.ResponseWriter, r *http.Request) {
		s.record(r)
		if !strings.HasSuffix(r.URL.Path, "/chat/completions") || !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			http.Error(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}`, http.StatusUnauthorized)
			return
		}
		st := s.next(r)
		if st.Status != 0 {
			failWith(w, st, fmt.Sprintf(`{"error":{"message":"fake failure %d","type":"server_error"}}`, st.Status))
			return
		}
		chunk := func(delta map[string]any, finish any) map[string]any {
			return map[string]any{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": time.Now().Unix(), "model": "gpt-fake",
				"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
		}
		data := func(v any) {
			b, _ := json.Marshal(v)
			fmt.Fprintf(w, "data: %s\n\n", b)
		}
		openStream(w)
		if !stream(w, r, st, func(i int, tok string) {
			d := map[string]any{"content": tok}
			if i == 0 {
				d["role"] = "assistant"
			}
			data(chunk(d, nil))
		}) {
			return
		}
		for i, c := range st.ToolCalls {
			first := map[string]any{"index": i, "id": c.ID, "type": "function", "function": map[string]any{"name": c.Name, "arguments": ""}}
			d := map[string]any{"tool_calls": []any{first}}
			if i == 0 && len(st.Tokens) == 0 {
				d["role"], d["content"] = "assistant", nil
			}
			data(chunk(d, nil))
			for _, p := range pieces(c.Input) {
				data(chunk(map[string]any{"tool_calls": []any{map[string]any{"index": i, "function": map[string]any{"arguments": p}}}}, nil))
			}
		}
		finish := "stop"
		if len(st.ToolCalls) > 0 {
			finish = "tool_calls"
		}
		data(chunk(map[string]any{}, finish))
		data(map[string]any{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": time.Now().Unix(), "model": "gpt-fake",
			"choices": []any{}, "usage": map[string]any{"prompt_tokens": 9, "completion_tokens": len(st.Tokens), "total_tokens": 9 + len(st.Tokens)}})
		fmt.Fprint(w, "data: [DONE]\n\n")
	})
}
