package agent

import (
	"context"
	"errors"
	"net/http"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	moltgate "github.com/moltgate/moltgate"
)

// providerRetries is how many times a provider call is retried on 429 and
// 5xx. The official SDKs back off exponentially and honour retry-after.
const providerRetries = 3

// Anthropic is the "anthropic-messages" API through the official SDK.
type Anthropic struct {
	client anthropic.Client
}

// NewAnthropic returns a provider for apiKey at baseURL ("" = Anthropic's).
func NewAnthropic(apiKey, baseURL string, headers map[string]string, httpClient *http.Client) *Anthropic {
	opts := []option.RequestOption{option.WithAPIKey(apiKey), option.WithMaxRetries(providerRetries)}
	if baseURL != "" {
		opts = append(opts, option.WithBaseURL(baseURL))
	}
	for name, v := range headers {
		opts = append(opts, option.WithHeader(name, v))
	}
	if httpClient != nil {
		opts = append(opts, option.WithHTTPClient(httpClient))
	}
	return &Anthropic{client: anthropic.NewClient(opts...)}
}

// Stream implements Provider.
func (a *Anthropic) Stream(ctx context.Context, req Request, onDelta func(string)) (Reply, error) {
	params := anthropic.MessageNewParams{Model: anthropic.Model(req.Model), MaxTokens: int64(req.MaxTokens)}
	if req.System != "" {
		params.System = []anthropic.TextBlockParam{{Text: req.System}}
	}
	for _, m := range req.Messages {
		switch m.Role {
		case "user":
			params.Messages = append(params.Messages, anthropic.NewUserMessage(anthropic.NewTextBlock(m.Content)))
		case "assistant":
			params.Messages = append(params.Messages, anthropic.NewAssistantMessage(anthropic.NewTextBlock(m.Content)))
		}
	}
	stream := a.client.Messages.NewStreaming(ctx, params)
	defer stream.Close()
	var msg anthropic.Message
	complete := false
	for stream.Next() {
		ev := stream.Current()
		if err := msg.Accumulate(ev); err != nil {
			return Reply{}, err
		}
		switch e := ev.AsAny().(type) {
		case anthropic.ContentBlockDeltaEvent:
			if d, ok := e.Delta.AsAny().(anthropic.TextDelta); ok {
				onDelta(d.Text)
			}
		case anthropic.MessageStopEvent:
			complete = true
		}
	}
	if err := stream.Err(); err != nil {
		return Reply{}, err
	}
	if !complete {
		return Reply{}, errors.New("the reply stream ended before the model finished")
	}
	var text string
	for _, b := range msg.Content {
		if t, ok := b.AsAny().(anthropic.TextBlock); ok {
			text += t.Text
		}
	}
	return Reply{Text: text, StopReason: string(msg.StopReason),
		Usage: moltgate.Usage{InputTokens: msg.Usage.InputTokens, OutputTokens: msg.Usage.OutputTokens}}, nil
}
