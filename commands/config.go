package commands

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	moltgate "github.com/moltgate/moltgate"
)

// MaxConfigBytes bounds a config document.
const MaxConfigBytes = 1 << 20

// ApplyConfig implements moltgate.ConfigService.
func (s *Service) ApplyConfig(ctx context.Context, doc json.RawMessage, baseHash string, meta moltgate.Meta) (string, error) {
	return s.applyConfig(ctx, doc, baseHash, "apply", meta)
}

// PatchConfig implements moltgate.ConfigService.
func (s *Service) PatchConfig(ctx context.Context, patch json.RawMessage, baseHash string, meta moltgate.Meta) (string, error) {
	current, _ := s.Models.Config.Current()
	if len(current) == 0 {
		current = json.RawMessage(`{}`)
	}
	merged, err := MergePatch(current, patch)
	if err != nil {
		return "", err
	}
	return s.applyConfig(ctx, merged, baseHash, "patch", meta)
}

func (s *Service) applyConfig(ctx context.Context, doc json.RawMessage, baseHash, note string, meta moltgate.Meta) (string, error) {
	canonical, issues := ValidateConfig(doc)
	if len(issues) > 0 {
		msgs := make([]string, len(issues))
		for i, is := range issues {
			msgs[i] = is.Path + ": " + is.Message
		}
		return "", &moltgate.Error{Code: moltgate.EINVALID, Message: "invalid config: " + strings.Join(msgs, "; "), Details: map[string]any{"issues": issues}}
	}
	_, current := s.Models.Config.Current()
	if current != "" && baseHash != current {
		return "", &moltgate.Error{Code: moltgate.ECONFLICT, Message: "config changed since it was read: reload it and apply your change again",
			Details: map[string]any{"currentHash": current}}
	}
	hash := ConfigHash(canonical)
	if hash == current {
		return hash, nil // nothing changes: no event
	}
	e := moltgate.MustEvent(moltgate.StreamConfig, moltgate.EventConfigApplied, moltgate.ConfigAppliedData{
		Document: canonical, Hash: hash, BaseHash: baseHash, Note: note,
	}, meta)
	if _, err := s.append(ctx, true, e); err != nil {
		return "", err
	}
	return hash, nil
}

// ConfigHash is the hash of a canonical document.
func ConfigHash(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// envRef is how a config names a secret kept in the environment.
var envRef = regexp.MustCompile(`^\$\{[A-Z][A-Z0-9_]*\}$`)

// secretKeys are config fields that hold credentials.
var secretKeys = map[string]bool{"apiKey": true, "botToken": true, "appToken": true, "token": true, "password": true, "secret": true, "signingSecret": true}

// ValidateConfig checks a document in OpenClaw's shape and returns it in
// canonical form (keys sorted, compact). Every problem is reported, not
// just the first.
//
// Secrets may not be stored in the config: the config is an event, and
// events reach the replica. A secret field must reference an environment
// variable as "${NAME}", resolved at run time.
func ValidateConfig(doc json.RawMessage) (json.RawMessage, []moltgate.ConfigIssue) {
	if len(doc) > MaxConfigBytes {
		return nil, []moltgate.ConfigIssue{{Path: "$", Message: fmt.Sprintf("config is %d bytes, more than the %d allowed", len(doc), MaxConfigBytes)}}
	}
	var root any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		return nil, []moltgate.ConfigIssue{{Path: "$", Message: "not valid JSON: " + err.Error()}}
	}
	obj, ok := root.(map[string]any)
	if !ok {
		return nil, []moltgate.ConfigIssue{{Path: "$", Message: "config must be a JSON object"}}
	}
	var issues []moltgate.ConfigIssue
	add := func(path, format string, args ...any) {
		issues = append(issues, moltgate.ConfigIssue{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	walkSecrets("", obj, add)

	providers := map[string]bool{}
	if models, ok := obj["models"].(map[string]any); ok {
		if ps, ok := models["providers"].(map[string]any); ok {
			for _, id := range sortedKeys(ps) {
				path := "models.providers." + id
				p, ok := ps[id].(map[string]any)
				if !ok {
					add(path, "must be an object")
					continue
				}
				providers[id] = true
				switch api, _ := p["api"].(string); api {
				case "anthropic-messages", "openai-completions":
				case "":
					add(path+".api", `is required: "anthropic-messages" or "openai-completions"`)
				default:
					add(path+".api", `%q is not supported: use "anthropic-messages" or "openai-completions"`, api)
				}
				if raw, ok := p["baseUrl"]; ok {
					u, err := url.Parse(fmt.Sprint(raw))
					if s, isStr := raw.(string); !isStr || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
						add(path+".baseUrl", "%q is not an http(s) URL", s)
					}
				}
				if ms, ok := p["models"]; ok {
					list, ok := ms.([]any)
					if !ok {
						add(path+".models", "must be a list")
					}
					for i, m := range list {
						id := modelID(m)
						if id == "" {
							add(fmt.Sprintf("%s.models[%d]", path, i), "needs an id")
						}
					}
				}
			}
		} else if _, present := models["providers"]; present {
			add("models.providers", "must be an object")
		}
	} else if _, present := obj["models"]; present {
		add("models", "must be an object")
	}

	if agents, ok := obj["agents"].(map[string]any); ok {
		if defaults, ok := agents["defaults"].(map[string]any); ok {
			if model, ok := defaults["model"].(map[string]any); ok {
				check := func(path string, v any) {
					ref, _ := v.(string)
					provider, name, found := strings.Cut(ref, "/")
					switch {
					case !found || provider == "" || name == "":
						add(path, `%v is not of the form "provider/model"`, v)
					case len(providers) > 0 && !providers[provider] && !builtinProviders[provider]:
						add(path, "provider %q is not configured in models.providers", provider)
					}
				}
				if p, ok := model["primary"]; ok {
					check("agents.defaults.model.primary", p)
				}
				if fb, ok := model["fallbacks"]; ok {
					list, ok := fb.([]any)
					if !ok {
						add("agents.defaults.model.fallbacks", "must be a list")
					}
					for i, f := range list {
						check(fmt.Sprintf("agents.defaults.model.fallbacks[%d]", i), f)
					}
				}
			}
		}
	}
	if len(issues) > 0 {
		return nil, issues
	}
	canonical, err := json.Marshal(obj) // encoding/json sorts map keys
	if err != nil {
		return nil, []moltgate.ConfigIssue{{Path: "$", Message: err.Error()}}
	}
	return canonical, nil
}

// builtinProviders need no models.providers entry: they are configured from
// the environment (ANTHROPIC_API_KEY, OPENAI_API_KEY, …) or built in.
var builtinProviders = map[string]bool{"anthropic": true, "openai": true, "echo": true, "cloudflare-ai-gateway": true}

func modelID(m any) string {
	switch m := m.(type) {
	case string:
		return m
	case map[string]any:
		id, _ := m["id"].(string)
		return id
	}
	return ""
}

// walkSecrets reports secret-named fields whose value is not "${ENV}".
func walkSecrets(path string, v any, add func(path, format string, args ...any)) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(v) {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if secretKeys[k] {
				if s, ok := v[k].(string); ok && s != "" && !envRef.MatchString(s) {
					add(p, "secrets are not stored in the config (it is replicated): set an environment variable and write \"${NAME}\" here")
				}
				continue
			}
			walkSecrets(p, v[k], add)
		}
	case []any:
		for i, item := range v {
			walkSecrets(fmt.Sprintf("%s[%d]", path, i), item, add)
		}
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// MergePatch applies an RFC 7386 JSON merge patch to doc.
func MergePatch(doc, patch json.RawMessage) (json.RawMessage, error) {
	var d, p any
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, moltgate.Errorf(moltgate.EINVALID, "current config is not valid JSON: %v", err)
	}
	if err := json.Unmarshal(patch, &p); err != nil {
		return nil, moltgate.Errorf(moltgate.EINVALID, "patch is not valid JSON: %v", err)
	}
	return json.Marshal(mergeValue(d, p))
}

func mergeValue(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
		} else {
			tm[k] = mergeValue(tm[k], v)
		}
	}
	return tm
}
