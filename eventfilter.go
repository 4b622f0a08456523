package moltgate

import (
	"cmp"
	"encoding/json"
	"strings"
	"time"
)

// EventFilter selects events. Zero fields do not filter.
type EventFilter struct {
	AfterSeq   int64     // seq > AfterSeq
	UntilSeq   int64     // seq <= UntilSeq
	TypePrefix string    // type = TypePrefix, or starts with it when it ends in "." or "*"
	Stream     string    // exact stream
	Actor      string    // meta.actor, exact
	Channel    string    // the chat platform an event came from or went to (see ChannelOf)
	Sender     string    // the platform's id of the person it is about (see ChannelOf)
	Since      time.Time // recorded_at >= Since
	Until      time.Time // recorded_at <= Until
	Limit      int       // at most Limit events
	Desc       bool      // newest first

	// EnvelopeOnly lists types whose payload and meta the caller will not
	// read: they come back with nil Data and an empty Meta, which spares a
	// full replay copying and decoding what it does not use.
	EnvelopeOnly []string
}

// Match says whether e passes f's filters (Limit and Desc aside). The
// event log answers the same question in SQL; Match is for events that
// arrive one at a time, such as a follow of the log.
func (f EventFilter) Match(e Event) bool {
	switch {
	case f.AfterSeq > 0 && e.Seq <= f.AfterSeq,
		f.UntilSeq > 0 && e.Seq > f.UntilSeq,
		f.Stream != "" && e.Stream != f.Stream,
		f.Actor != "" && e.Meta.Actor != f.Actor,
		f.TypePrefix != "" && !MatchType(f.TypePrefix, e.Type),
		!f.Since.IsZero() && e.RecordedAt.Before(f.Since.Truncate(time.Millisecond)),
		!f.Until.IsZero() && e.RecordedAt.After(f.Until):
		return false
	}
	if f.Channel == "" && f.Sender == "" {
		return true
	}
	channel, sender := ChannelOf(e)
	return (f.Channel == "" || channel == f.Channel) && (f.Sender == "" || sender == f.Sender)
}

// MatchType applies EventFilter.TypePrefix: the type itself, or a family
// of types (see TypeFamily).
func MatchType(prefix, typ string) bool {
	if start, ok := TypeFamily(prefix); ok {
		return strings.HasPrefix(typ, start)
	}
	return typ == prefix
}

// TypeFamily says whether an EventFilter.TypePrefix names a family of
// types rather than one ("device.", "chat.*"), and what their types start
// with ("device.", "chat.").
func TypeFamily(prefix string) (start string, ok bool) {
	if start, ok := strings.CutSuffix(prefix, "*"); ok {
		return start, true
	}
	return prefix, strings.HasSuffix(prefix, ".")
}

// ChannelOf says which chat platform an event came from or went to, and
// which person on it it is about, from the payload fields that carry them:
// a message's or run's origin, or a channel event's own channel and
// sender. Events with neither (a web chat message, a config change) give
// empty strings. The event log filters on the same fields in SQL.
func ChannelOf(e Event) (channel, sender string) {
	var p struct {
		Channel  string          `json:"channel"`
		SenderID string          `json:"senderId"`
		Sender   string          `json:"sender"`
		Origin   *ChannelAddress `json:"origin"`
	}
	if json.Unmarshal(e.Data, &p) != nil {
		return "", ""
	}
	if p.Origin != nil {
		return p.Origin.Channel, p.Origin.Sender
	}
	return p.Channel, cmp.Or(p.SenderID, p.Sender)
}
