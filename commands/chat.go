package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
)

// Limits on chat input.
const (
	MaxSessionKeyLen = 200
	MaxMessageBytes  = 256 << 10
)

func validSessionKey(key string) error {
	if key == "" || len(key) > MaxSessionKeyLen || !utf8.ValidString(key) || strings.ContainsAny(key, "\x00\n\r") {
		return moltgate.Errorf(moltgate.EINVALID, "sessionKey must be 1-%d characters of text", MaxSessionKeyLen)
	}
	return nil
}

// derivedID turns an idempotency key into an event id, so that the log's
// own idempotency (an id is stored once) makes a retried send a no-op.
func derivedID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	h := hex.EncodeToString(sum[:16])
	return h[0:8] + "-" + h[8:12] + "-8" + h[13:16] + "-" + h[16:20] + "-" + h[20:32]
}

// StartRun implements moltgate.ChatService.
func (s *Service) StartRun(ctx context.Context, req moltgate.RunRequest, meta moltgate.Meta) (string, bool, error) {
	if err := validSessionKey(req.SessionKey); err != nil {
		return "", false, err
	}
	if strings.TrimSpace(req.Message) == "" {
		return "", false, moltgate.Errorf(moltgate.EINVALID, "message is empty")
	}
	if len(req.Message) > MaxMessageBytes || !utf8.ValidString(req.Message) {
		return "", false, moltgate.Errorf(moltgate.EINVALID, "message must be valid UTF-8 of at most %d bytes", MaxMessageBytes)
	}
	runID := moltgate.NewID()
	stream := moltgate.SessionStream(req.SessionKey)
	user := moltgate.MustEvent(stream, moltgate.EventChatMessageAdded, moltgate.ChatMessageAddedData{
		SessionKey: req.SessionKey, MessageID: moltgate.NewID(), Role: "user", Content: req.Message, RunID: runID,
	}, meta)
	started := moltgate.MustEvent(stream, moltgate.EventChatRunStarted, moltgate.ChatRunStartedData{
		SessionKey: req.SessionKey, RunID: runID, IdempotencyKey: req.IdempotencyKey,
	}, meta)
	if req.IdempotencyKey != "" {
		user.ID = derivedID("chat.send", req.SessionKey, req.IdempotencyKey, "user")
		started.ID = derivedID("chat.send", req.SessionKey, req.IdempotencyKey, "run")
	}
	stored, err := s.append(ctx, false, user, started)
	if err != nil {
		return "", false, err
	}
	var got moltgate.ChatRunStartedData
	if err := stored[1].Decode(&got); err != nil {
		return "", false, err
	}
	return got.RunID, got.RunID == runID, nil
}

// FinishRun implements moltgate.ChatService.
func (s *Service) FinishRun(ctx context.Context, sessionKey, runID string, reply *moltgate.ChatMessage, status, errMsg string, meta moltgate.Meta) error {
	stream := moltgate.SessionStream(sessionKey)
	var events []moltgate.Event
	if reply != nil {
		events = append(events, moltgate.MustEvent(stream, moltgate.EventChatMessageAdded, moltgate.ChatMessageAddedData{
			SessionKey: sessionKey, MessageID: moltgate.NewID(), Role: "assistant", Content: reply.Content,
			RunID: runID, Model: reply.Model, Usage: reply.Usage,
		}, meta))
	}
	events = append(events, moltgate.MustEvent(stream, moltgate.EventChatRunFinished, moltgate.ChatRunFinishedData{
		SessionKey: sessionKey, RunID: runID, Status: status, Error: errMsg,
	}, meta))
	_, err := s.append(ctx, false, events...)
	return err
}

// Inject implements moltgate.ChatService.
func (s *Service) Inject(ctx context.Context, sessionKey string, msg moltgate.ChatMessage, meta moltgate.Meta) (moltgate.ChatMessage, error) {
	if err := validSessionKey(sessionKey); err != nil {
		return msg, err
	}
	if msg.Role == "" {
		msg.Role = "assistant"
	}
	if msg.Role != "assistant" && msg.Role != "user" && msg.Role != "system" {
		return msg, moltgate.Errorf(moltgate.EINVALID, "role must be assistant, user or system")
	}
	if strings.TrimSpace(msg.Content) == "" || len(msg.Content) > MaxMessageBytes {
		return msg, moltgate.Errorf(moltgate.EINVALID, "message must be 1-%d bytes", MaxMessageBytes)
	}
	msg.ID = moltgate.NewID()
	e := moltgate.MustEvent(moltgate.SessionStream(sessionKey), moltgate.EventChatMessageAdded, moltgate.ChatMessageAddedData{
		SessionKey: sessionKey, MessageID: msg.ID, Role: msg.Role, Content: msg.Content,
	}, meta)
	stored, err := s.append(ctx, false, e)
	if err != nil {
		return msg, err
	}
	msg.Timestamp = stored[0].RecordedAt
	return msg, nil
}

// ResetSession implements moltgate.ChatService.
func (s *Service) ResetSession(ctx context.Context, sessionKey string, meta moltgate.Meta) (string, error) {
	if err := validSessionKey(sessionKey); err != nil {
		return "", err
	}
	id := moltgate.NewID()
	e := moltgate.MustEvent(moltgate.SessionStream(sessionKey), moltgate.EventSessionReset, moltgate.SessionResetData{SessionKey: sessionKey, NewSessionID: id}, meta)
	if _, err := s.append(ctx, false, e); err != nil {
		return "", err
	}
	return id, nil
}

// Transcript implements moltgate.ChatService: the messages of the current
// session, read from the log by the session's stream.
func (s *Service) Transcript(ctx context.Context, sessionKey string, limit int) ([]moltgate.ChatMessage, error) {
	if err := validSessionKey(sessionKey); err != nil {
		return nil, err
	}
	sess, _ := s.Models.Sessions.Get(sessionKey)
	events, err := s.Log.Query(ctx, eventlog.Filter{
		Stream: moltgate.SessionStream(sessionKey), TypePrefix: moltgate.EventChatMessageAdded,
		AfterSeq: sess.ResetSeq, Limit: limit, Desc: true,
	})
	if err != nil {
		return nil, err
	}
	out := make([]moltgate.ChatMessage, 0, len(events))
	for i := len(events) - 1; i >= 0; i-- {
		var d moltgate.ChatMessageAddedData
		if err := events[i].Decode(&d); err != nil {
			continue // reported by the read models; a transcript skips it
		}
		out = append(out, moltgate.ChatMessage{ID: d.MessageID, Role: d.Role, Content: d.Content, RunID: d.RunID,
			Model: d.Model, Usage: d.Usage, Timestamp: events[i].RecordedAt})
	}
	return out, nil
}
