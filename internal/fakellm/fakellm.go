// Package fakellm runs loopback fakes of the Anthropic Messages and OpenAI
// Chat Completions streaming APIs that speak their real wire formats (SSE
// events and chunks), with scripted failures: error statuses with
// retry-after, a stream cut mid-way, a slow first token.
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
}

// Server is a running fake. Requests consume Steps in order; the last step
// repeats.
type Server struct {
	URL string

	mu       sync.Mutex
	steps    []Step
	requests []map[string]any
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

// Tokens splits text into words (with their spaces) for a Step.
func Tokens(text string) []string { return strings.SplitAfter(text, " ") }

func start(tb testing.TB, h func(s *Server, w http.ResponseWriter, r *http.Request)) *Server {
	s := &Server{steps: []Step{{Tokens: Tokens("Hello from the fake model.")}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(s, w, r) }))
	tb.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// stream writes the step's tokens through write, flushing each, honouring
// the delays, the cut and the client going away.
func stream(w http.ResponseWriter, r *http.Request, st Step, write func(i int, token string)) bool {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	f := w.(http.Flusher)
	f.Flush()
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

// NewAnthropic starts a fake of POST /v1/messages with stream: true.
func NewAnthropic(tb testing.TB) *Server {
	return start(tb, func(s *Server, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/messages" || r.Header.Get("X-Api-Key") == "" {
			http.Error(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`, http.StatusUnauthorized)
			return
		}
		st := s.next(r)
		if st.Status != 0 {
			kind := map[int]string{429: "rate_limit_error", 529: "overloaded_error"}[st.Status]
			if kind == "" {
				kind = "api_error"
			}
			failWith(w, st, fmt.Sprintf(`{"type":"error","error":{"type":%q,"message":"fake failure %d"}}`, kind, st.Status))
			return
		}
		sse(w, "message_start", map[string]any{"type": "message_start", "message": map[string]any{"id": "msg_fake", "type": "message",
			"role": "assistant", "content": []any{}, "model": "claude-fake", "stop_reason": nil, "stop_sequence": nil,
			"usage": map[string]any{"input_tokens": 12, "output_tokens": 1}}})
		sse(w, "content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}})
		if !stream(w, r, st, func(i int, tok string) {
			sse(w, "content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": tok}})
		}) {
			return
		}
		sse(w, "content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
		sse(w, "message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": "end_turn", "stop_sequence": nil},
			"usage": map[string]any{"output_tokens": len(st.Tokens)}})
		sse(w, "message_stop", map[string]any{"type": "message_stop"})
	})
}

// NewOpenAI starts a fake of POST /chat/completions with stream: true.
func NewOpenAI(tb testing.TB) *Server {
	return start(tb, func(s *Server, w http.ResponseWriter, r *http.Request) {
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
		if !stream(w, r, st, func(i int, tok string) {
			d := map[string]any{"content": tok}
			if i == 0 {
				d["role"] = "assistant"
			}
			data(chunk(d, nil))
		}) {
			return
		}
		data(chunk(map[string]any{}, "stop"))
		data(map[string]any{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": time.Now().Unix(), "model": "gpt-fake",
			"choices": []any{}, "usage": map[string]any{"prompt_tokens": 9, "completion_tokens": len(st.Tokens), "total_tokens": 9 + len(st.Tokens)}})
		fmt.Fprint(w, "data: [DONE]\n\n")
	})
}
