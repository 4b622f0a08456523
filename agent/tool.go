package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	moltgate "github.com/moltgate/moltgate"
)

// Tool is something the model may call during a run. The runner offers
// the tools whose Offered says yes, runs the calls the model makes one
// after the other, records each (moltgate.ToolCall) and hands the results
// back to the model.
type Tool interface {
	// Name is how the model calls the tool: letters, digits, _ and -.
	Name() string
	// Description tells the model what the tool does and when to use it.
	Description() string
	// Schema is the JSON schema of the tool's input, an object.
	Schema() json.RawMessage
	// Offered says whether the tool is offered in a run (a nil error) or
	// why not. A call the model makes to a tool it was not offered is
	// refused with that reason: models do call tools they were not given.
	Offered(run RunInfo) error
	// Run carries out one call. An error whose chain holds a
	// *RefusedError is recorded as refused, any other as failed; either
	// way the model is told and the run goes on.
	Run(ctx context.Context, call Call) (ToolResult, error)
}

// RunInfo is what a tool knows about the run it serves.
type RunInfo struct {
	SessionKey string
	RunID      string
	// Owner: the owner sent the message, so owner-only tools are offered.
	Owner  bool
	Origin *moltgate.ChannelAddress
}

// Call is one tool call.
type Call struct {
	RunInfo
	ID    string          // the provider's call id
	Input json.RawMessage // the model's arguments, a JSON object
	// Scope holds what tools keep for the rest of the run (a browser tab).
	Scope *RunScope
}

// ToolResult is what a tool returns.
type ToolResult struct {
	// Text is what the model reads.
	Text string
	// Summary is what people see in the transcript: short, and never the
	// values of secrets. Empty: the start of Text.
	Summary string
	// Image is a screenshot: recorded with the call, and shown to models
	// that read images.
	Image *moltgate.Media
}

// RefusedError is a call the runner or a tool will not carry out here: a
// tool the run was not offered, a private address. It is recorded with
// status moltgate.ToolRefused.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "refused: " + e.Reason }

// Refusef returns a *RefusedError.
func Refusef(format string, args ...any) error {
	return &RefusedError{Reason: fmt.Sprintf(format, args...)}
}

// RunScope holds what tools keep for one run, such as the browser tab
// they opened on first use, and closes it when the run ends.
type RunScope struct {
	mu      sync.Mutex
	values  map[string]any
	closers []func()
}

func newRunScope() *RunScope { return &RunScope{values: map[string]any{}} }

// Get returns the value stored under key, nil when there is none.
func (s *RunScope) Get(key string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[key]
}

// Set stores a value for the rest of the run; close (optional) runs when
// the run ends.
func (s *RunScope) Set(key string, v any, close func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values[key] = v
	if close != nil {
		s.closers = append(s.closers, close)
	}
}

// close runs the closers, newest first.
func (s *RunScope) close() {
	s.mu.Lock()
	closers := s.closers
	s.closers, s.values = nil, map[string]any{}
	s.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
}

// toolSpecs are the tools as offered to a model.
func toolSpecs(tools []Tool) []ToolSpec {
	specs := make([]ToolSpec, 0, len(tools))
	for _, t := range tools {
		specs = append(specs, ToolSpec{Name: t.Name(), Description: t.Description(), Schema: t.Schema()})
	}
	return specs
}

// decodeInput reads a call's input into v, with an error that tells the
// model what it got wrong.
func decodeInput(in json.RawMessage, v any) error {
	if len(strings.TrimSpace(string(in))) == 0 {
		in = json.RawMessage(`{}`)
	}
	if err := json.Unmarshal(in, v); err != nil {
		return fmt.Errorf("the input is not a valid JSON object for this tool: %w", err)
	}
	return nil
}

// maxSummary bounds a tool call's summary, in characters.
const maxSummary = 300

// shorten cuts s to n characters at most, marking the cut.
func shorten(s string, n int) string {
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// InputRedactor is a tool whose input can hold a secret no pattern
// recognises (the text the browser types may be a password): it says what
// of the input may be recorded and shown.
type InputRedactor interface {
	RecordedInput(in json.RawMessage) json.RawMessage
}

// isRefused reports whether err refuses a call.
func isRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r)
}
