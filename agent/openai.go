package agent

import (
	"context"
	"errors"
	"net/http"

	moltgate "github.com/moltgate/moltgate"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// OpenAI is the "openai-completions" API (chat completions) through the
// official SDK: OpenAI itself, or any compatible baseUrl (DeepSeek,
// OpenRouter, Ollama, Cloudflare AI Gateway).
type OpenAI struct {
	client openai.Client
}

// NewOpenAI returns a provider for apiKey at baseURL ("" = OpenAI's).
func NewOpenAI(apiKey, baseURL string, headers map[string]string, httpClient *http.Client) *OpenAI {
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
	return &OpenAI{client: openai.NewClient(opts...)}
}

// Stream implements Provider.
func (o *OpenAI) Stream(ctx context.Context, req Request, onDelta func(string)) (Reply, error) {
	params := openai.ChatCompletionNewParams{
		Model:         openai.ChatModel(req.Model),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}
	if req.MaxTokens > 0 {
		params.MaxCompletionTokens = openai.Int(int64(req.MaxTokens))
	}
	if req.System != "" {
		params.Messages = append(params.Messages, openai.SystemMessage(req.System))
	}
	for _, m := range req.Messages {
		switch m.Role {
		case "user":
			params.Messages = append(params.Messages, openai.UserMessage(m.Content))
		case "assistant":
			params.Messages = append(params.Messages, openai.AssistantMessage(m.Content))
		}
	}
	stream := o.client.Chat.Completions.NewStreaming(ctx, params)
	defer stream.Close()
	var acc openai.ChatCompletionAccumulator
	finish := ""
	for stream.Next() {
		chunk := stream.Current()
		acc.AddChunk(chunk)
		for _, c := range chunk.Choices {
			if c.Delta.Content != "" {
				onDelta(c.Delta.Content)
			}
			if c.FinishReason != "" {
				finish = c.FinishReason
			}
		}
	}
	if err := stream.Err(); err != nil {
		return Reply{}, err
	}
	if finish == "" {
		return Reply{}, errors.New("the reply stream ended before the model finished")
	}
	text := ""
	if len(acc.Choices) > 0 {
		text = acc.Choices[0].Message.Content
	}
	return Reply{Text: text, StopReason: finish,
		Usage: moltgate.Usage{InputTokens: acc.Usage.PromptTokens, OutputTokens: acc.Usage.CompletionTokens}}, nil
}
