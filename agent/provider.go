// Package agent runs the assistant: model providers behind one interface,
// the tools the model may call, the system prompt built from the
// workspace and its skills, and the runner that turns a chat.send into a
// streamed, recorded reply.
package agent

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// Request is what a provider is asked: the system prompt, the tools the
// model may call and the conversation so far, oldest first.
type Request struct {
	Model     string
	System    string
	Messages  []Message
	MaxTokens int
	Tools     []ToolSpec
	// Images says the model reads images: a tool's screenshot goes back
	// to it as an image; otherwise a text says one was taken.
	Images bool
}

// Message is one turn of the conversation as every provider sees it; each
// provider writes it in its own wire format.
type Message struct {
	Role string // "user" or "assistant"
	Text string
	// ToolCalls are the tools an assistant turn asked for.
	ToolCalls []ToolUse
	// Results answer the tool calls of the assistant turn before (a user
	// turn).
	Results []ToolOutput
}

// ToolUse is one tool call a model asked for.
type ToolUse struct {
	ID    string // the provider's call id
	Name  string
	Input json.RawMessage // a JSON object
}

// ToolOutput is what a tool call returned, as the model reads it.
type ToolOutput struct {
	CallID  string
	Text    string
	Image   *moltgate.Media
	IsError bool
}

// ToolSpec is a tool as offered to a model.
type ToolSpec struct {
	Name        string
	Description string
	Schema      json.RawMessage // JSON schema of the input, an object
}

// Reply is a provider's complete answer to one request: text, tool calls
// or both.
type Reply struct {
	Text       string
	ToolCalls  []ToolUse
	Usage      moltgate.Usage
	StopReason string
}

// Provider streams a model's reply, calling onDelta with each piece of text
// as it arrives, and returns the whole reply. It honours ctx: cancelling it
// aborts the request.
type Provider interface {
	Stream(ctx context.Context, req Request, onDelta func(text string)) (Reply, error)
}

// Choice is one model to try: a provider and a model name at it. Name is
// "provider/model", as the config writes it.
type Choice struct {
	Name     string
	Model    string
	Provider Provider
	// Entry is the model's entry in the config (context window, max
	// tokens, inputs), or just its id when the config has none.
	Entry moltgate.ModelEntry
	// API is the wire API the provider speaks (moltgate.APIAnthropicMessages
	// or moltgate.APIOpenAICompletions; "" for the echo model).
	API string
}

// EchoModel is the model name of the built-in echo provider.
const EchoModel = "echo/echo"

// NoModelNotice is the echo model's explanation, shown with its replies.
const NoModelNotice = "No model is configured, so the built-in echo model answered. " +
	"Set ANTHROPIC_API_KEY (or OPENAI_API_KEY), or add a provider under models.providers in the config, to talk to a real model."

// Echo is the built-in provider used when no real one is configured: it
// streams the user's last message back, word by word, with a notice that
// says how to configure a real model. It never calls tools.
type Echo struct {
	// Delay between streamed words; zero streams as fast as possible.
	Delay time.Duration
}

// Stream implements Provider.
func (e Echo) Stream(ctx context.Context, req Request, onDelta func(string)) (Reply, error) {
	last := ""
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if m := req.Messages[i]; m.Role == "user" && len(m.Results) == 0 {
			last = m.Text
			break
		}
	}
	text := "You said: " + last + "\n\n*" + NoModelNotice + "*"
	var out strings.Builder
	for i, word := range strings.SplitAfter(text, " ") {
		if i > 0 && e.Delay > 0 {
			select {
			case <-time.After(e.Delay):
			case <-ctx.Done():
				return Reply{Text: out.String()}, ctx.Err()
			}
		}
		if err := ctx.Err(); err != nil {
			return Reply{Text: out.String()}, err
		}
		out.WriteString(word)
		onDelta(word)
	}
	words := int64(len(strings.Fields(text)))
	return Reply{Text: out.String(), Usage: moltgate.Usage{InputTokens: int64(len(strings.Fields(last))), OutputTokens: words}, StopReason: "end_turn"}, nil
}

// NoImageNote is what a model that cannot read images is told in place of
// a screenshot.
const NoImageNote = "[A screenshot was taken, but this model cannot view images; use the browser's text action to read the page.]"

// outputText is the text of a tool output for a model: with a note in
// place of the image when the model cannot see it.
func outputText(o ToolOutput, images bool) string {
	text := o.Text
	if o.Image != nil && !images {
		text = strings.TrimSpace(text + "\n\n" + NoImageNote)
	}
	if text == "" {
		text = "(no output)"
	}
	return text
}

// inputObject returns a tool call's input as a JSON object, {} when it is
// empty or not an object, so a replayed call is always valid for the
// provider.
func inputObject(in json.RawMessage) json.RawMessage {
	if raw := strings.TrimSpace(string(in)); raw == "" || raw[0] != '{' || !json.Valid(in) {
		return json.RawMessage(`{}`)
	}
	return in
}

// recordedInput is a tool call's input as recorded: the model's JSON with
// secrets redacted, or, when it sent something that is not JSON, that
// text as a JSON string.
func recordedInput(in json.RawMessage) json.RawMessage {
	if strings.TrimSpace(string(in)) == "" {
		return json.RawMessage(`{}`)
	}
	if !json.Valid(in) {
		in, _ = json.Marshal(string(in))
	}
	return moltgate.RedactSensitive(in)
}

// schemaObject decodes a tool's JSON schema.
func schemaObject(schema json.RawMessage) map[string]any {
	m := map[string]any{}
	if len(schema) > 0 {
		_ = json.Unmarshal(schema, &m)
	}
	if m["type"] == nil {
		m["type"] = "object"
	}
	return m
}
