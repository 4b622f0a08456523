package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	moltgate "github.com/moltgate/moltgate"
)

// ConfigTool lets the owner's assistant read and change the gateway's
// configuration ("add my Telegram bot token", "switch to the DeepSeek
// model"). It is offered only in the owner's runs: anyone else who can
// talk to the assistant could otherwise rewrite who may talk to it.
type ConfigTool struct {
	Queries moltgate.ConfigQueries
	Service moltgate.ConfigService
}

// NewConfigTool returns the gateway_config tool.
func NewConfigTool(q moltgate.ConfigQueries, s moltgate.ConfigService) *ConfigTool {
	return &ConfigTool{Queries: q, Service: s}
}

// Name implements Tool.
func (*ConfigTool) Name() string { return "gateway_config" }

// Description implements Tool.
func (*ConfigTool) Description() string {
	return "Read or change this gateway's configuration (OpenClaw's JSON shape: models.providers, agents.defaults.model, channels, tools, browser, skills). " +
		"get returns the current document with secrets shown as " + moltgate.RedactedMarker + ". " +
		"patch applies a JSON merge patch (RFC 7386: objects merge, null deletes a key, lists are replaced whole); " +
		"tokens and keys in it are encrypted before they are stored. Read the config before you patch it, and only change what the owner asked for: " +
		"a patch is refused when the config changed since you read it (read it again, then patch)."
}

// Schema implements Tool.
func (*ConfigTool) Schema() json.RawMessage {
	return json.RawMessage(`{"type":"object","properties":{` +
		`"action":{"type":"string","enum":["get","patch"]},` +
		`"patch":{"type":"object","description":"for patch: the JSON merge patch"},` +
		`"baseHash":{"type":"string","description":"for patch: the hash of the config the patch was written for (default: the one your last get returned)"}},` +
		`"required":["action"],"additionalProperties":false}`)
}

// Offered implements Tool: in the owner's runs only.
func (*ConfigTool) Offered(run RunInfo) error {
	if !run.Owner {
		return Refusef("gateway_config is only available to the owner")
	}
	return nil
}

// configHashKey holds, in the run's scope, the hash of the config the
// model last read.
const configHashKey = "gateway_config.hash"

// Run implements Tool.
func (c *ConfigTool) Run(ctx context.Context, call Call) (ToolResult, error) {
	if err := c.Offered(call.RunInfo); err != nil {
		return ToolResult{}, err // never trust that the caller checked
	}
	var in struct {
		Action   string          `json:"action"`
		Patch    json.RawMessage `json:"patch"`
		BaseHash string          `json:"baseHash"`
	}
	if err := decodeInput(call.Input, &in); err != nil {
		return ToolResult{}, err
	}
	doc, hash := c.Queries.CurrentConfig()
	switch in.Action {
	case "get":
		// The patch that follows is checked against what the model read:
		// an edit the owner made meanwhile is not overwritten unseen.
		call.Scope.Set(configHashKey, hash, nil)
		if len(doc) == 0 {
			return ToolResult{Text: "No configuration has been saved yet: the gateway runs on its defaults and the environment.", Summary: "read the config (none saved)"}, nil
		}
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, moltgate.RedactSealed(doc), "", "  "); err != nil {
			return ToolResult{}, fmt.Errorf("cannot read the config: %w", err)
		}
		return ToolResult{Text: fmt.Sprintf("Config (hash %s):\n%s", hash, pretty.String()), Summary: "read the config"}, nil
	case "patch":
		var patch map[string]any
		if err := json.Unmarshal(in.Patch, &patch); err != nil || patch == nil {
			return ToolResult{}, errors.New("patch must be a JSON object (a merge patch)")
		}
		base := in.BaseHash
		if base == "" {
			base = hash // patched unread: the model wrote it for the config as it is
			if read, ok := call.Scope.Get(configHashKey).(string); ok {
				base = read
			}
		}
		meta := moltgate.Meta{Actor: "agent", Source: moltgate.SourceAgent, CorrelationID: call.RunID}
		res, err := c.Service.PatchConfig(ctx, in.Patch, base, meta)
		if err != nil {
			return ToolResult{}, configError(err)
		}
		// The model knows the config it just wrote: a second patch builds on it.
		call.Scope.Set(configHashKey, res.Hash, nil)
		paths := leafPaths(patch)
		text := fmt.Sprintf("Applied. New hash %s.", res.Hash)
		if !res.Changed {
			text = "Nothing changed: the config already said that."
		}
		for _, w := range res.Warnings {
			text += fmt.Sprintf("\nWarning: %s: %s", w.Path, w.Message)
		}
		// The summary names the paths, never their values: a patch may
		// carry a token.
		return ToolResult{Text: text, Summary: "patched the config: " + shorten(strings.Join(paths, ", "), 200)}, nil
	default:
		return ToolResult{}, fmt.Errorf("unknown action %q: use get or patch", in.Action)
	}
}

// configError explains a refused config change: the issues are in the
// message of a moltgate.Error; other errors may carry internals.
func configError(err error) error {
	msg := moltgate.ErrorMessage(err)
	if moltgate.ErrorCode(err) == moltgate.ECONFLICT {
		msg += " (the config changed meanwhile: read it again, then patch)"
	}
	return errors.New("cannot change the config: " + msg)
}

// leafPaths lists the paths a merge patch sets or deletes.
func leafPaths(v map[string]any) []string {
	var out []string
	var walk func(prefix []string, v any)
	walk = func(prefix []string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k, x := range m {
				walk(append(prefix[:len(prefix):len(prefix)], k), x)
			}
			return
		}
		out = append(out, moltgate.PathString(prefix))
	}
	walk(nil, v)
	sort.Strings(out)
	return out
}
