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

// InterruptedMessage is what a run the gateway died in the middle of says.
const InterruptedMessage = "the gateway restarted before this reply was finished; send your message again"

func validSessionKey(key string) error {
	if key == "" || len(key) > MaxSessionKeyLen || !utf8.ValidString(key) || strings.ContainsAny(key, "\x00\n\r") {
		return moltgate.Errorf(moltgate.EINVALID, "sessionKey must be 1-%d characters of text", MaxSessionKeyLen)
	}
	return nil
}

// sealText seals the credentials people paste into a chat ("my Discord
// token is …") before the message is appended: the log and the replica
// keep the sentence, and the agent opens the token when it needs it.
func (s *Service) sealText(stream, text string) string {
	if s.Sealer == nil {
		return text
	}
	return s.Sealer.SealText(stream, text)
}

// derivedID turns a key into an event id, so that the log's own
// idempotency (an id is stored once) makes a repeated command a no-op: a
// retried send, a run finished twice.
func derivedID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	h := hex.EncodeToString(sum[:16])
	return h[0:8] + "-" + h[8:12] + "-8" + h[13:16] + "-" + h[16:20] + "-" + h[20:32]
}

// SendMessage implements moltgate.ChatService. Accepting a run is one
// operation: the message and the run start are appended together, then
// the run is queued for the agent; when the agent refuses it (it is
// stopping), the run is recorded as finished without starting, never left
// open. A retry with the same idempotency key answers with the first run,
// and queues it again if it is open but not queued (the first attempt's
// enqueue was lost), so no run is stranded.
func (s *Service) SendMessage(ctx context.Context, req moltgate.RunRequest, meta moltgate.Meta) (moltgate.RunReceipt, error) {
	if err := validSessionKey(req.SessionKey); err != nil {
		return moltgate.RunReceipt{}, err
	}
	if strings.TrimSpace(req.Message) == "" {
		return moltgate.RunReceipt{}, moltgate.Errorf(moltgate.EINVALID, "message is empty")
	}
	if len(req.Message) > MaxMessageBytes || !utf8.ValidString(req.Message) {
		return moltgate.RunReceipt{}, moltgate.Errorf(moltgate.EINVALID, "message must be valid UTF-8 of at most %d bytes (it has %d)", MaxMessageBytes, len(req.Message))
	}
	if len(req.IdempotencyKey) > 200 {
		return moltgate.RunReceipt{}, moltgate.Errorf(moltgate.EINVALID, "idempotencyKey is at most 200 characters")
	}
	runID := moltgate.NewID()
	stream := moltgate.SessionStream(req.SessionKey)
	user := moltgate.MustEvent(stream, moltgate.EventChatMessageAdded, moltgate.ChatMessageAddedData{
		SessionKey: req.SessionKey, MessageID: moltgate.NewID(), Role: "user", Content: s.sealText(stream, req.Message), RunID: runID, Origin: req.Origin,
	}, meta)
	started := moltgate.MustEvent(stream, moltgate.EventChatRunStarted, moltgate.ChatRunStartedData{
		SessionKey: req.SessionKey, RunID: runID, IdempotencyKey: req.IdempotencyKey, Origin: req.Origin, Owner: req.Owner, ReplyToID: req.ReplyToID,
	}, meta)
	if req.IdempotencyKey != "" {
		user.ID = derivedID("chat.send", req.SessionKey, req.IdempotencyKey, "user")
		started.ID = derivedID("chat.send", req.SessionKey, req.IdempotencyKey, "run")
	}
	stored, err := s.append(ctx, false, user, started)
	if stored == nil {
		return moltgate.RunReceipt{}, err
	}
	if err != nil {
		// The run is in the log; only the read models are slow. The agent
		// reads the transcript from the log, so the run can still start.
		s.Logger.Warn("read models are behind a new run", "session", req.SessionKey, "error", err)
	}
	var got moltgate.ChatRunStartedData
	if err := stored[1].Decode(&got); err != nil {
		return moltgate.RunReceipt{}, err
	}
	receipt := moltgate.RunReceipt{RunID: got.RunID, Created: got.RunID == runID, State: "queued"}
	if !receipt.Created {
		if state, finished, err := s.runState(ctx, req.SessionKey, got.RunID); err != nil {
			return receipt, err
		} else if finished {
			receipt.State = state
			return receipt, nil
		}
	}
	if err := s.enqueue(moltgate.QueuedRun{SessionKey: req.SessionKey, RunID: got.RunID, Owner: got.Owner, Origin: got.Origin}); err != nil {
		finishErr := s.FinishRun(context.WithoutCancel(ctx), req.SessionKey, got.RunID, nil, moltgate.RunAborted,
			"not started: "+moltgate.ErrorMessage(err), moltgate.Meta{Actor: "system", Source: moltgate.SourceSystem, CausationID: got.RunID})
		if finishErr != nil {
			s.Logger.Error("cannot record a run that did not start", "run", got.RunID, "error", finishErr)
		}
		return receipt, err
	}
	return receipt, nil
}

func (s *Service) enqueue(run moltgate.QueuedRun) error {
	if s.Runs == nil {
		return moltgate.Errorf(moltgate.EUNAVAILABLE, "the agent is not running")
	}
	return s.Runs.Enqueue(run)
}

// runState says how a run ended, or finished false while it is open. The
// end of a run has an id derived from it (see FinishRun), so this is one
// lookup by id, however long the session.
func (s *Service) runState(ctx context.Context, sessionKey, runID string) (state string, finished bool, err error) {
	e, err := s.Log.Get(ctx, derivedID("run.finished", sessionKey, runID))
	switch {
	case moltgate.ErrorCode(err) == moltgate.ENOTFOUND:
		return "", false, nil
	case err != nil:
		return "", false, err
	}
	var d moltgate.ChatRunFinishedData
	if err := e.Decode(&d); err != nil {
		return "", false, err
	}
	return d.Status, true, nil
}

// FinishRun implements moltgate.ChatService. The reply and the finish have
// ids derived from the run, so whoever records the end of a run second
// (the agent and a shutdown racing, a retry) changes nothing. A reply is
// appended at the session stream's next versions: a reply decided on a
// run that was still open conflicts with a close recorded in between, and
// is then decided again, and dropped, rather than landing after the run's
// end. An end without a reply needs no version: its id alone keeps it
// once.
//
// The end of a run must be recorded, or it stays open until the next
// start calls it interrupted. A busy session (messages sent while the
// reply was written) only moves the stream on without contradicting the
// reply, so FinishRun decides again for as long as ctx lasts, not for the
// few attempts other commands get.
func (s *Service) FinishRun(ctx context.Context, sessionKey, runID string, reply *moltgate.ChatMessage, status, errMsg string, meta moltgate.Meta) error {
	stream := moltgate.SessionStream(sessionKey)
	finish := func(replyID string) moltgate.Event {
		e := moltgate.MustEvent(stream, moltgate.EventChatRunFinished, moltgate.ChatRunFinishedData{
			SessionKey: sessionKey, RunID: runID, Status: status, Error: errMsg, ReplyEventID: replyID,
		}, meta)
		e.ID = derivedID("run.finished", sessionKey, runID)
		return e
	}
	decision := func() ([]moltgate.Event, error) {
		if reply == nil {
			return []moltgate.Event{finish("")}, nil
		}
		sess, _ := s.Models.Sessions.Get(sessionKey) // before the state: a newer state then only causes a retry
		// A reply for a run that has ended already (closed as
		// interrupted, then finished late by the agent) would land
		// after its end.
		if _, ended, err := s.runState(ctx, sessionKey, runID); err != nil || ended {
			return nil, err
		}
		e := moltgate.MustEvent(stream, moltgate.EventChatMessageAdded, moltgate.ChatMessageAddedData{
			SessionKey: sessionKey, MessageID: moltgate.NewID(), Role: "assistant", Content: s.sealText(stream, reply.Content),
			RunID: runID, Model: reply.Model, Usage: reply.Usage, Origin: reply.Origin,
		}, meta)
		e.ID = derivedID("run.reply", sessionKey, runID)
		return []moltgate.Event{at(e, sess.Version+1), at(finish(e.ID), sess.Version+2)}, nil
	}
	for {
		_, err := s.decide(ctx, false, decision)
		if moltgate.ErrorCode(err) != moltgate.ECONFLICT || ctx.Err() != nil {
			return err
		}
	}
}

// MaxToolSummary bounds the text of a tool call's summary in the log.
const MaxToolSummary = 4000

// RecordToolCall implements moltgate.ChatService. The summary is stored
// once, in the call; Transcript shows it as the message's content too.
func (s *Service) RecordToolCall(ctx context.Context, sessionKey, runID string, call moltgate.ToolCall, meta moltgate.Meta) error {
	if err := validSessionKey(sessionKey); err != nil {
		return err
	}
	if call.ID == "" || call.Name == "" {
		return moltgate.Errorf(moltgate.EINVALID, "a tool call needs an id and a name")
	}
	stream := moltgate.SessionStream(sessionKey)
	call.Summary = s.sealText(stream, truncate(call.Summary, MaxToolSummary))
	call.Error = s.sealText(stream, call.Error)
	call.Input = moltgate.RedactSensitive(call.Input)
	e := moltgate.MustEvent(stream, moltgate.EventChatMessageAdded, moltgate.ChatMessageAddedData{
		SessionKey: sessionKey, MessageID: moltgate.NewID(), Role: "tool", RunID: runID, Tool: &call,
	}, meta)
	e.ID = derivedID("run.tool", sessionKey, runID, call.ID)
	_, err := s.append(ctx, false, e)
	return err
}

// RecoverRuns closes the runs a crash left open (started, never finished)
// with RunInterrupted, and returns how many it closed. It runs at start-up,
// before the agent takes new runs.
func (s *Service) RecoverRuns(ctx context.Context) (int, error) {
	n := 0
	meta := moltgate.Meta{Actor: "system", Source: moltgate.SourceSystem}
	for _, sess := range s.Models.Sessions.WithOpenRuns() {
		for _, r := range sess.OpenRuns {
			if err := s.FinishRun(ctx, sess.Key, r.RunID, nil, moltgate.RunInterrupted, InterruptedMessage, meta); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
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
	if strings.TrimSpace(msg.Content) == "" || len(msg.Content) > MaxMessageBytes || !utf8.ValidString(msg.Content) {
		return msg, moltgate.Errorf(moltgate.EINVALID, "message must be valid UTF-8 of 1-%d bytes", MaxMessageBytes)
	}
	msg.ID = moltgate.NewID()
	stream := moltgate.SessionStream(sessionKey)
	e := moltgate.MustEvent(stream, moltgate.EventChatMessageAdded, moltgate.ChatMessageAddedData{
		SessionKey: sessionKey, MessageID: msg.ID, Role: msg.Role, Content: s.sealText(stream, msg.Content),
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
		if d.Content == "" && d.Tool != nil {
			d.Content = d.Tool.Summary // what clients that do not read the call show
		}
		out = append(out, moltgate.ChatMessage{ID: d.MessageID, Role: d.Role, Content: d.Content, RunID: d.RunID,
			Model: d.Model, Usage: d.Usage, Origin: d.Origin, Tool: d.Tool, Timestamp: events[i].RecordedAt})
	}
	return out, nil
}
