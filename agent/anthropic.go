package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	moltgate "github.com/moltgate/moltgate"
)

// providerRetries is how many times a provider call is retried on 429 and
// 5xx. The official SDKs back off exponentially and honour retry-after.
const providerRetries = 3

// errIncomplete is a reply stream that ended before the model said it had
// finished: a connection cut mid-way.
var errIncomplete = errors.New("the reply stream ended before the model finished")

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

// Stream implements Provider. Text deltas stream to onDelta; tool_use
// blocks (their input arrives as input_json_delta pieces) are accumulated
// and returned in Reply.ToolCalls.
func (a *Anthropic) Stream(ctx context.Context, req Request, onDelta func(string)) (Reply, error) {
	params := anthropic.MessageNewParams{Model: anthropic.Model(req.Model), MaxTokens: int64(req.MaxTokens),
		Messages: anthropicMessages(req.Messages, req.Images)}
	if req.System != "" {
		params.System = []anthropic.TextBlockParam{{Text: req.System}}
	}
	for _, t := range req.Tools {
		params.Tools = append(params.Tools, anthropicTool(t))
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
		return Reply{}, errIncomplete
	}
	reply := Reply{StopReason: string(msg.StopReason),
		Usage: moltgate.Usage{InputTokens: msg.Usage.InputTokens, OutputTokens: msg.Usage.OutputTokens}}
	for _, b := range msg.Content {
		switch b := b.AsAny().(type) {
		case anthropic.TextBlock:
			reply.Text += b.Text
		case anthropic.ToolUseBlock:
			reply.ToolCalls = append(reply.ToolCalls, ToolUse{ID: b.ID, Name: b.Name, Input: b.Input})
		}
	}
	return reply, nil
}

// anthropicMessages writes the conversation as Messages API turns: tool
// calls are tool_use blocks of the assistant turn, their results
// tool_result blocks of the next user turn, a screenshot an image block
// inside its tool_result when the model reads images.
func anthropicMessages(msgs []Message, images bool) []anthropic.MessageParam {
	var out []anthropic.MessageParam
	for _, m := range msgs {
		var blocks []anthropic.ContentBlockParamUnion
		for _, r := range m.Results {
			res := anthropic.ToolResultBlockParam{ToolUseID: r.CallID, Content: []anthropic.ToolResultBlockParamContentUnion{
				{OfText: &anthropic.TextBlockParam{Text: outputText(r, images)}}}}
			if r.IsError {
				res.IsError = anthropic.Bool(true)
			}
			if r.Image != nil && images {
				img := anthropic.NewImageBlockBase64(r.Image.MimeType, base64.StdEncoding.EncodeToString(r.Image.Data)).OfImage
				res.Content = append(res.Content, anthropic.ToolResultBlockParamContentUnion{OfImage: img})
			}
			blocks = append(blocks, anthropic.ContentBlockParamUnion{OfToolResult: &res})
		}
		if m.Text != "" {
			blocks = append(blocks, anthropic.NewTextBlock(m.Text))
		}
		for _, c := range m.ToolCalls {
			blocks = append(blocks, anthropic.NewToolUseBlock(c.ID, inputObject(c.Input), c.Name))
		}
		if len(blocks) == 0 {
			continue // the API refuses empty turns
		}
		if m.Role == "assistant" {
			out = append(out, anthropic.NewAssistantMessage(blocks...))
		} else {
			out = append(out, anthropic.NewUserMessage(blocks...))
		}
	}
	return out
}

func anthropicTool(t ToolSpec) anthropic.ToolUnionParam {
	schema := schemaObject(t.Schema)
	in := anthropic.ToolInputSchemaParam{Properties: schema["properties"], ExtraFields: map[string]any{}}
	if req, ok := schema["required"].([]any); ok {
		for _, r := range req {
			if s, ok := r.(string); ok {
				in.Required = append(in.Required, s)
			}
		}
	}
	for k, v := range schema {
		if k != "type" && k != "properties" && k != "required" {
			in.ExtraFields[k] = v
		}
	}
	return anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{Name: t.Name, Description: anthropic.String(t.Description), InputSchema: in}}
}
