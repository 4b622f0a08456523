// Package moltgate holds the domain of the moltgate gateway: the event
// envelope, the catalogue of event types with their payloads, error codes and
// ID generation. It imports only the standard library so that every other
// package (the event log, the read models, the adapters) can depend on it
// without depending on each other.
package moltgate

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"time"
)

// Version is the gateway version reported in gateway.started and hello-ok.
// It is overridden at build time with -ldflags "-X github.com/moltgate/moltgate.Version=…".
var Version = "0.1.0-dev"

// Event is one immutable entry of the event log. Everything moltgate knows
// is derived from the sequence of these.
type Event struct {
	// Seq is the global, gap-free position assigned at commit. Zero before
	// the event is appended.
	Seq int64 `json:"seq"`
	// ID makes an append idempotent: appending an ID that is already stored
	// returns the stored event and writes nothing.
	ID string `json:"id"`
	// Stream groups the events of one aggregate ("device:<id>", "session:<key>",
	// "config") and Version is the event's position inside it, starting at 1.
	Stream  string `json:"stream"`
	Version int64  `json:"version"`
	// Type is dotted and in the past tense: "device.pairing.approved".
	Type string `json:"type"`
	// Schema is the payload version; readers upcast older payloads.
	Schema int `json:"schema"`
	// Data is the JSON payload; see the *Data types in events.go.
	Data json.RawMessage `json:"data"`
	// Meta records who or what caused the event.
	Meta Meta `json:"meta"`
	// RecordedAt is the commit time, millisecond precision.
	RecordedAt time.Time `json:"recordedAt"`
}

// Meta describes the cause of an event. It must never hold a secret.
type Meta struct {
	Actor         string `json:"actor,omitempty"`  // who: an email, a device id, "system"
	Source        string `json:"source,omitempty"` // ui, cli, ws, channel, agent, env, system
	RemoteIP      string `json:"remoteIp,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
	CausationID   string `json:"causationId,omitempty"`
}

// Sources of events, for Meta.Source.
const (
	SourceSystem  = "system"
	SourceCLI     = "cli"
	SourceUI      = "ui"
	SourceWS      = "ws"
	SourceChannel = "channel"
	SourceAgent   = "agent"
	SourceEnv     = "env"
)

// Decode unmarshals the event's payload into v.
func (e Event) Decode(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return Errorf(EINVALID, "cannot decode %s payload at seq %d: %v", e.Type, e.Seq, err)
	}
	return nil
}

// DecodeJSON decodes one JSON document into v, keeping numbers as written
// (json.Number: a Discord id of 18 digits survives, as a float64 would
// not) and refusing anything after the document.
func DecodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// Token, not More: More does not see a stray closing "}" or "]".
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON document")
	}
	return nil
}

// NewEvent builds an event with a fresh ID and the current schema of its
// type, encoding data as its payload.
func NewEvent(stream, typ string, data any, meta Meta) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, Errorf(EINVALID, "cannot encode %s payload: %v", typ, err)
	}
	return Event{ID: NewID(), Stream: stream, Type: typ, Schema: CurrentSchema(typ), Data: raw, Meta: meta}, nil
}

// MustEvent is NewEvent for payloads that cannot fail to encode (the
// catalogue's own structs); it panics on a programming error.
func MustEvent(stream, typ string, data any, meta Meta) Event {
	e, err := NewEvent(stream, typ, data, meta)
	if err != nil {
		panic(err)
	}
	return e
}

// NewID returns a UUIDv7: time-ordered, so IDs sort by creation and index
// well, and random enough to be globally unique.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	ms := uint64(time.Now().UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6] = b[6]&0x0f | 0x70 // version 7
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
