package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"

	moltgate "github.com/moltgate/moltgate"
)

// ApplyConfig implements moltgate.ConfigService.
func (s *Service) ApplyConfig(ctx context.Context, doc json.RawMessage, baseHash string, meta moltgate.Meta) (moltgate.ConfigResult, error) {
	return s.writeConfig(ctx, baseHash, "apply", meta, func(json.RawMessage) (json.RawMessage, error) { return doc, nil })
}

// PatchConfig implements moltgate.ConfigService.
func (s *Service) PatchConfig(ctx context.Context, patch json.RawMessage, baseHash string, meta moltgate.Meta) (moltgate.ConfigResult, error) {
	return s.writeConfig(ctx, baseHash, "patch", meta, func(current json.RawMessage) (json.RawMessage, error) {
		if len(current) == 0 {
			current = json.RawMessage(`{}`)
		}
		return MergePatch(current, patch)
	})
}

// RevertConfig implements moltgate.ConfigService: the old document, secrets
// still sealed as they were, becomes a new version.
func (s *Service) RevertConfig(ctx context.Context, seq int64, baseHash string, meta moltgate.Meta) (moltgate.ConfigResult, error) {
	e, err := s.Log.GetSeq(ctx, seq)
	if err != nil {
		return moltgate.ConfigResult{}, err
	}
	if e.Type != moltgate.EventConfigApplied {
		return moltgate.ConfigResult{}, moltgate.Errorf(moltgate.ENOTFOUND, "seq %d is a %s, not a config version", seq, e.Type)
	}
	var old moltgate.ConfigAppliedData
	if err := e.Decode(&old); err != nil {
		return moltgate.ConfigResult{}, err
	}
	return s.writeConfig(ctx, baseHash, "revert to seq "+strconv.FormatInt(seq, 10), meta, func(json.RawMessage) (json.RawMessage, error) { return old.Document, nil })
}

// writeConfig builds the new document from the current one, seals and
// checks it, and appends it at the config stream's next version. A writer
// that loses a race decides again: its baseHash is then stale.
func (s *Service) writeConfig(ctx context.Context, baseHash, note string, meta moltgate.Meta, build func(current json.RawMessage) (json.RawMessage, error)) (moltgate.ConfigResult, error) {
	var res moltgate.ConfigResult
	_, err := s.decide(ctx, true, func() ([]moltgate.Event, error) {
		current, currentHash, version := s.Models.Config.CurrentVersion()
		if currentHash != "" && baseHash != currentHash {
			return nil, &moltgate.Error{Code: moltgate.ECONFLICT, Message: "config changed since it was read: reload it and apply your change again",
				Details: map[string]any{"currentHash": currentHash}}
		}
		doc, err := build(current)
		if err != nil {
			return nil, err
		}
		sealed, issues, warnings := s.checkConfig(doc, current)
		if len(issues) > 0 {
			return nil, invalidConfig(issues)
		}
		res = moltgate.ConfigResult{Hash: ConfigHash(sealed), Warnings: warnings}
		if res.Hash == currentHash {
			return nil, nil // nothing changes: no event
		}
		res.Changed = true
		return []moltgate.Event{at(moltgate.MustEvent(moltgate.StreamConfig, moltgate.EventConfigApplied, moltgate.ConfigAppliedData{
			Document: sealed, Hash: res.Hash, BaseHash: baseHash, Note: note,
		}, meta), version+1)}, nil
	})
	return res, err
}

// CheckConfig implements moltgate.ConfigService.
func (s *Service) CheckConfig(ctx context.Context, doc json.RawMessage) (issues, warnings []moltgate.ConfigIssue) {
	current, _ := s.Models.Config.Current()
	_, issues, warnings = s.checkConfig(doc, current)
	return issues, warnings
}

// checkConfig seals doc's secrets (the marker keeps what current stores)
// and checks the result: the typed schema, and ${NAME} references, which
// may not name moltgate's own secrets and should name variables that are
// set. It returns the sealed document in canonical form.
func (s *Service) checkConfig(doc, current json.RawMessage) (sealed json.RawMessage, issues, warnings []moltgate.ConfigIssue) {
	if _, issues = moltgate.ParseConfig(doc); len(issues) > 0 {
		return nil, issues, nil
	}
	if s.Sealer == nil {
		return nil, []moltgate.ConfigIssue{{Path: "$", Message: "this gateway has no sealing key, so it cannot store secrets"}}, nil
	}
	if sealed, issues = s.Sealer.SealDocument(doc, current); len(issues) > 0 {
		return nil, issues, nil
	}
	var v any
	_ = json.Unmarshal(sealed, &v)
	moltgate.MapStrings(v, func(path []string, value string) string {
		for _, name := range moltgate.EnvRefs(value) {
			p := moltgate.PathString(path)
			switch {
			case moltgate.ProtectedEnvVar(name):
				issues = append(issues, moltgate.ConfigIssue{Path: p, Message: "${" + name + "} is one of moltgate's own secrets and cannot be used in the config"})
			case s.Getenv != nil && s.Getenv(name) == "":
				warnings = append(warnings, moltgate.ConfigIssue{Path: p, Message: "${" + name + "} is not set in the gateway's environment"})
			}
		}
		return value
	})
	warnings = append(warnings, s.Sealer.Unopenable(sealed)...)
	moltgate.SortIssues(issues)
	moltgate.SortIssues(warnings)
	return sealed, issues, warnings
}

// invalidConfig is the error for a refused document: every issue, in the
// message and in Details for clients that show them by field.
func invalidConfig(issues []moltgate.ConfigIssue) error {
	msgs := make([]string, len(issues))
	for i, is := range issues {
		msgs[i] = is.Path + ": " + is.Message
	}
	return &moltgate.Error{Code: moltgate.EINVALID, Message: "invalid config: " + strings.Join(msgs, "; "), Details: map[string]any{"issues": issues}}
}

// ConfigHash is the hash of a canonical document.
func ConfigHash(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// MergePatch applies an RFC 7386 JSON merge patch to doc.
func MergePatch(doc, patch json.RawMessage) (json.RawMessage, error) {
	var d, p any
	if err := moltgate.DecodeJSON(doc, &d); err != nil {
		return nil, moltgate.Errorf(moltgate.EINVALID, "current config is not valid JSON: %v", err)
	}
	if err := moltgate.DecodeJSON(patch, &p); err != nil {
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
