package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"

	moltgate "github.com/moltgate/moltgate"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
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

// Stream implements Provider. Content deltas stream to onDelta; the
// delta.tool_calls pieces (id and name first, then the arguments in
// chunks, by index) are accumulated and returned in Reply.ToolCalls.
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
	params.Messages = append(params.Messages, openaiMessages(req.Messages, req.Images)...)
	for _, t := range req.Tools {
		params.Tools = append(params.Tools, openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name: t.Name, Description: openai.String(t.Description), Parameters: shared.FunctionParameters(schemaObject(t.Schema))}))
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
		return Reply{}, errIncomplete
	}
	reply := Reply{StopReason: finish, Usage: moltgate.Usage{InputTokens: acc.Usage.PromptTokens, OutputTokens: acc.Usage.CompletionTokens}}
	if len(acc.Choices) > 0 {
		m := acc.Choices[0].Message
		reply.Text = m.Content
		for _, c := range m.ToolCalls {
			reply.ToolCalls = append(reply.ToolCalls, ToolUse{ID: c.ID, Name: c.Function.Name, Input: json.RawMessage(c.Function.Arguments)})
		}
	}
	return reply, nil
}

// openaiMessages writes the conversation as chat completion messages: tool
// calls ride on the assistant message, each result is a "tool" message.
// Tool messages carry only text, so screenshots follow them in one user
// message of image parts when the model reads images.
func openaiMessages(msgs []Message, images bool) []openai.ChatCompletionMessageParamUnion {
	var out []openai.ChatCompletionMessageParamUnion
	for _, m := range msgs {
		if m.Role == "assistant" {
			a := openai.ChatCompletionAssistantMessageParam{}
			if m.Text != "" {
				a.Content.OfString = openai.String(m.Text)
			}
			for _, c := range m.ToolCalls {
				a.ToolCalls = append(a.ToolCalls, openai.ChatCompletionMessageToolCallUnionParam{OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
					ID: c.ID, Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: c.Name, Arguments: string(inputObject(c.Input))}}})
			}
			if m.Text != "" || len(a.ToolCalls) > 0 {
				out = append(out, openai.ChatCompletionMessageParamUnion{OfAssistant: &a})
			}
			continue
		}
		var shots []openai.ChatCompletionContentPartUnionParam
		for _, r := range m.Results {
			out = append(out, openai.ToolMessage(outputText(r, images), r.CallID))
			if r.Image != nil && images {
				shots = append(shots, openai.TextContentPart("Screenshot from tool call "+r.CallID+":"),
					openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{
						URL: "data:" + r.Image.MimeType + ";base64," + base64.StdEncoding.EncodeToString(r.Image.Data)}))
			}
		}
		if len(shots) > 0 {
			out = append(out, openai.UserMessage(shots))
		}
		if m.Text != "" {
			out = append(out, openai.UserMessage(m.Text))
		}
	}
	return out
}
