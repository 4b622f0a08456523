package projections

import (
	"encoding/json"
	"sync"

	moltgate "github.com/moltgate/moltgate"
)

// Config is the read model of the configuration: the current document, its
// hash, and the history of changes.
type Config struct {
	mu    sync.RWMutex
	state configState
}

type configState struct {
	Document json.RawMessage          `json:"document,omitempty"`
	Hash     string                   `json:"hash,omitempty"`
	History  []moltgate.ConfigVersion `json:"history,omitempty"`
	Version  int64                    `json:"version"` // of the config stream
}

// NewConfig returns an empty config read model.
func NewConfig() *Config { return &Config{} }

func (c *Config) Name() string { return "config" }
func (c *Config) Version() int { return 2 } // 2: stream version

func (c *Config) Reset() {
	c.mu.Lock()
	c.state = configState{}
	c.mu.Unlock()
}

func (c *Config) Apply(e moltgate.Event) error {
	if e.Type != moltgate.EventConfigApplied {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// The version comes from the envelope: an event whose payload does
	// not decode still took its place in the stream, and a writer must
	// append after it.
	c.state.Version = e.Version
	var d moltgate.ConfigAppliedData
	if err := e.Decode(&d); err != nil {
		return err
	}
	c.state.Document, c.state.Hash = d.Document, d.Hash
	c.state.History = append(c.state.History, moltgate.ConfigVersion{
		Seq: e.Seq, Hash: d.Hash, Actor: e.Meta.Actor, Source: e.Meta.Source, Note: d.Note, At: e.RecordedAt,
	})
	return nil
}

// Current returns the current document (nil when none was ever applied)
// and its hash.
func (c *Config) Current() (json.RawMessage, string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.state.Document, c.state.Hash
}

// CurrentVersion returns the document, its hash and the config stream's
// version, read together: what a command decides on.
func (c *Config) CurrentVersion() (json.RawMessage, string, int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.state.Document, c.state.Hash, c.state.Version
}

// History returns every applied version, oldest first.
func (c *Config) History() []moltgate.ConfigVersion {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]moltgate.ConfigVersion(nil), c.state.History...)
}

func (c *Config) MarshalJSON() ([]byte, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return json.Marshal(c.state)
}

func (c *Config) Snapshot() (json.RawMessage, error) { return c.MarshalJSON() }

func (c *Config) LoadSnapshot(b json.RawMessage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return json.Unmarshal(b, &c.state)
}

// Needs implements Selective.
func (c *Config) Needs(t string) Need {
	if t == moltgate.EventConfigApplied {
		return NeedPayload
	}
	return NeedNothing
}
