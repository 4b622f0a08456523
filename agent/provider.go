// Package agent runs the assistant: model providers behind one interface,
// and the runner that turns a chat.send into a streamed, recorded reply.
package agent

import (
	"context"
	"strings"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// Request is what a provider is asked: the system prompt and the
// conversation so far, oldest first, ending with the user's message.
type Request struct {
	Model     string
	System    string
	Messages  []moltgate.ChatMessage
	MaxTokens int
}

// Reply is a provider's complete answer.
type Reply struct {
	Text       string
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
}

// EchoModel is the model name of the built-in echo provider.
const EchoModel = "echo/echo"

// NoModelNotice is the echo model's explanation, shown with its replies.
const NoModelNotice = "No model is configured, so the built-in echo model answered. " +
	"Set ANTHROPIC_API_KEY (or OPENAI_API_KEY), or add a provider under models.providers in the config, to talk to a real model."

// Echo is the built-in provider used when no real one is configured: it
// streams the user's last message back, word by word, with a notice that
// says how to configure a real model.
type Echo struct {
	// Delay between streamed words; zero streams as fast as possible.
	Delay time.Duration
}

// Stream implements Provider.
func (e Echo) Stream(ctx context.Context, req Request, onDelta func(string)) (Reply, error) {
	last := ""
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			last = req.Messages[i].Content
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
