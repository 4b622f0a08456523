package agent

import moltgate "github.com/moltgate/moltgate"

// Token estimates. The runner does not tokenize (every provider counts
// differently); it estimates about four characters per token, which is
// close for English prose and code with every common tokenizer, plus a
// few tokens per message for the roles and separators, and a screenshot
// at what Anthropic charges for an image of about a megapixel.
const (
	charsPerToken        = 4
	messageTokens        = 4
	imageTokens          = 1600
	DefaultMaxTokens     = 4096   // a reply's budget when the model entry does not say
	DefaultContextWindow = 128000 // a model's window when its entry does not say
)

// estimateTokens estimates what a text costs.
func estimateTokens(text string) int { return (len(text) + charsPerToken - 1) / charsPerToken }

// messageCost estimates what a message costs.
func messageCost(m Message) int {
	n := messageTokens + estimateTokens(m.Text)
	for _, c := range m.ToolCalls {
		n += messageTokens + estimateTokens(c.Name) + estimateTokens(string(c.Input))
	}
	for _, r := range m.Results {
		n += messageTokens + estimateTokens(r.Text)
		if r.Image != nil {
			n += imageTokens
		}
	}
	return n
}

// maxTokens is what a model may write: its entry's maxTokens, or
// DefaultMaxTokens when the config does not say.
func maxTokens(e moltgate.ModelEntry) int {
	if e.MaxTokens > 0 {
		return e.MaxTokens
	}
	return DefaultMaxTokens
}

// contextWindow is what a model reads: its entry's contextWindow, or
// DefaultContextWindow when the config does not say.
func contextWindow(e moltgate.ModelEntry) int {
	if e.ContextWindow > 0 {
		return e.ContextWindow
	}
	return DefaultContextWindow
}

// fitWindow returns the newest part of msgs that fits a model's context
// window next to the system prompt, the tool definitions and the reply's
// budget (maxTokens), so a long session does not resend everything and
// then fail for being too long. The system prompt is always kept; so is
// the newest user message and everything after it (the tool calls and
// results of the run), even when they alone do not fit: the provider then
// says so. Older messages are dropped oldest first, and the kept part
// starts with a user message, as the providers require.
func fitWindow(msgs []Message, system string, tools []ToolSpec, window, maxTokens int) []Message {
	budget := window - maxTokens - estimateTokens(system)
	for _, t := range tools {
		budget -= estimateTokens(t.Name) + estimateTokens(t.Description) + estimateTokens(string(t.Schema))
	}
	newest := len(msgs)
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" && len(msgs[i].Results) == 0 {
			newest = i
			break
		}
	}
	used := 0
	for _, m := range msgs[newest:] {
		used += messageCost(m)
	}
	start := newest
	for start > 0 && used+messageCost(msgs[start-1]) <= budget {
		start--
		used += messageCost(msgs[start])
	}
	for start < newest && msgs[start].Role != "user" {
		start++
	}
	return msgs[start:]
}
