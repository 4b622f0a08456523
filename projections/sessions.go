package projections

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// Session is one entry of the session index. The transcript is not kept
// here: it is read from the log by the session's stream.
type Session struct {
	Key          string    `json:"key"`
	ID           string    `json:"id"` // changes on reset
	LastActivity time.Time `json:"lastActivity"`
	LastSeq      int64     `json:"lastSeq"`      // orders sessions whose events share a millisecond
	MessageCount int64     `json:"messageCount"` // messages since the last reset
	TotalCount   int64     `json:"totalCount"`   // messages ever
	LastRunID    string    `json:"lastRunId,omitempty"`
	LastRunState string    `json:"lastRunState,omitempty"` // running, completed, aborted, failed
	ResetSeq     int64     `json:"resetSeq,omitempty"`     // the transcript starts after this seq
}

// Sessions is the read model of chat sessions.
type Sessions struct {
	mu    sync.RWMutex
	state map[string]*Session
}

// NewSessions returns an empty session index.
func NewSessions() *Sessions { return &Sessions{state: map[string]*Session{}} }

func (s *Sessions) Name() string { return "sessions" }
func (s *Sessions) Version() int { return 1 }

func (s *Sessions) Reset() {
	s.mu.Lock()
	s.state = map[string]*Session{}
	s.mu.Unlock()
}

// Apply reads chat messages from the envelope alone (the stream names the
// session): they are most of the log, and decoding their payloads would
// dominate a rebuild.
func (s *Sessions) Apply(e moltgate.Event) error {
	switch e.Type {
	case moltgate.EventChatMessageAdded, moltgate.EventChatRunStarted, moltgate.EventChatRunFinished, moltgate.EventSessionReset:
	default:
		return nil
	}
	key, ok := moltgate.SessionKeyFromStream(e.Stream)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.state[key]
	if sess == nil {
		sess = &Session{Key: key, ID: e.ID}
		s.state[key] = sess
	}
	sess.LastActivity, sess.LastSeq = e.RecordedAt, e.Seq
	switch e.Type {
	case moltgate.EventChatMessageAdded:
		sess.MessageCount++
		sess.TotalCount++
	case moltgate.EventChatRunStarted:
		var p moltgate.ChatRunStartedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		sess.LastRunID, sess.LastRunState = p.RunID, "running"
	case moltgate.EventChatRunFinished:
		var p moltgate.ChatRunFinishedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		sess.LastRunID, sess.LastRunState = p.RunID, p.Status
	case moltgate.EventSessionReset:
		var p moltgate.SessionResetData
		if err := e.Decode(&p); err != nil {
			return err
		}
		sess.ID, sess.MessageCount, sess.ResetSeq = p.NewSessionID, 0, e.Seq
	}
	return nil
}

// List returns every session, most recently active first.
func (s *Sessions) List() []Session {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Session, 0, len(s.state))
	for _, v := range s.state {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastSeq > out[j].LastSeq })
	return out
}

// Get returns the session with key.
func (s *Sessions) Get(key string) (Session, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.state[key]
	if !ok {
		return Session{}, false
	}
	return *v, true
}

func (s *Sessions) MarshalJSON() ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return json.Marshal(s.state)
}

func (s *Sessions) Snapshot() (json.RawMessage, error) { return s.MarshalJSON() }

func (s *Sessions) LoadSnapshot(b json.RawMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return json.Unmarshal(b, &s.state)
}

// Needs implements Selective: chat messages are counted from the envelope.
func (s *Sessions) Needs(t string) Need {
	switch t {
	case moltgate.EventChatMessageAdded:
		return NeedEnvelope
	case moltgate.EventChatRunStarted, moltgate.EventChatRunFinished, moltgate.EventSessionReset:
		return NeedPayload
	}
	return NeedNothing
}
