package projections

import (
	"encoding/json"
	"sort"
	"sync"

	moltgate "github.com/moltgate/moltgate"
)

// Sessions is the read model of chat sessions: the session index with each
// session's open runs and stream version. The transcript is not kept here:
// it is read from the log by the session's stream.
type Sessions struct {
	mu    sync.RWMutex
	state map[string]*sessionState
}

// sessionState is a Session with its open runs in a map.
type sessionState struct {
	moltgate.Session
	Open map[string]moltgate.OpenRun `json:"open,omitempty"`
}

// NewSessions returns an empty session index.
func NewSessions() *Sessions { return &Sessions{state: map[string]*sessionState{}} }

func (s *Sessions) Name() string { return "sessions" }
func (s *Sessions) Version() int { return 2 } // 2: open runs, origin, stream version

func (s *Sessions) Reset() {
	s.mu.Lock()
	s.state = map[string]*sessionState{}
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
		sess = &sessionState{Session: moltgate.Session{Key: key, ID: e.ID}}
		s.state[key] = sess
	}
	sess.LastActivity, sess.LastSeq, sess.Version = e.RecordedAt, e.Seq, e.Version
	switch e.Type {
	case moltgate.EventChatMessageAdded:
		sess.MessageCount++
		sess.TotalCount++
	case moltgate.EventChatRunStarted:
		var p moltgate.ChatRunStartedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		sess.LastRunID, sess.LastRunState, sess.LastRunError = p.RunID, "running", ""
		if sess.Open == nil {
			sess.Open = map[string]moltgate.OpenRun{}
		}
		sess.Open[p.RunID] = moltgate.OpenRun{RunID: p.RunID, IdempotencyKey: p.IdempotencyKey, StartedAt: e.RecordedAt}
		if p.Origin != nil {
			sess.Origin = p.Origin
		}
	case moltgate.EventChatRunFinished:
		var p moltgate.ChatRunFinishedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		delete(sess.Open, p.RunID)
		sess.LastRunID, sess.LastRunState, sess.LastRunError = p.RunID, p.Status, p.Error
	case moltgate.EventSessionReset:
		var p moltgate.SessionResetData
		if err := e.Decode(&p); err != nil {
			return err
		}
		sess.ID, sess.MessageCount, sess.ResetSeq = p.NewSessionID, 0, e.Seq
	}
	return nil
}

// view copies a session out with its open runs, oldest first.
func (st *sessionState) view() moltgate.Session {
	out := st.Session
	out.OpenRuns = nil
	for _, r := range st.Open {
		out.OpenRuns = append(out.OpenRuns, r)
	}
	sort.Slice(out.OpenRuns, func(i, j int) bool {
		if !out.OpenRuns[i].StartedAt.Equal(out.OpenRuns[j].StartedAt) {
			return out.OpenRuns[i].StartedAt.Before(out.OpenRuns[j].StartedAt)
		}
		return out.OpenRuns[i].RunID < out.OpenRuns[j].RunID
	})
	return out
}

// List returns every session, most recently active first.
func (s *Sessions) List() []moltgate.Session {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]moltgate.Session, 0, len(s.state))
	for _, v := range s.state {
		out = append(out, v.view())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastSeq > out[j].LastSeq })
	return out
}

// Get returns the session with key.
func (s *Sessions) Get(key string) (moltgate.Session, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.state[key]
	if !ok {
		return moltgate.Session{}, false
	}
	return v.view(), true
}

// WithOpenRuns returns the sessions that have runs started and not
// finished: at start-up, what a crash left dangling.
func (s *Sessions) WithOpenRuns() []moltgate.Session {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []moltgate.Session
	for _, v := range s.state {
		if len(v.Open) > 0 {
			out = append(out, v.view())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
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
