package channels

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// outboxModel is the outbox read model and the delivery service: it
// applies a record as the projection does (sent or final: gone; failed:
// attempts and pieces counted).
type outboxModel struct {
	mu      sync.Mutex
	pending []moltgate.Delivery
	records []deliveryRecord
}

type deliveryRecord struct {
	delivery string
	ids      []string
	err      error
	final    bool
}

func (m *outboxModel) PendingDeliveries() []moltgate.Delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.pending)
}

func (m *outboxModel) RecordDelivery(_ context.Context, d moltgate.Delivery, ids []string, err error, final bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records = append(m.records, deliveryRecord{d.ID, ids, err, final})
	i := slices.IndexFunc(m.pending, func(p moltgate.Delivery) bool { return p.ID == d.ID })
	switch {
	case i < 0:
	case err == nil || final:
		m.pending = slices.Delete(m.pending, i, i+1)
	default:
		m.pending[i].Attempts = d.Attempts + 1
		m.pending[i].Sent += len(ids)
	}
	return nil
}

func (m *outboxModel) add(d moltgate.Delivery) {
	m.mu.Lock()
	m.pending = append(m.pending, d)
	m.mu.Unlock()
}

func (m *outboxModel) done() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending) == 0
}

func (m *outboxModel) recorded() []deliveryRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.records)
}

// replyLog is the event log as the outbox reads it: the replies it
// delivers, and no new events.
type replyLog struct {
	moltgate.EventReader
	replies map[string]string // event id → reply text
}

func (replyLog) LastSeq() int64 { return 0 }

func (replyLog) Follow(ctx context.Context, _ int64, _ func(moltgate.Event) error) error {
	<-ctx.Done()
	return nil
}

func (l replyLog) Get(_ context.Context, id string) (moltgate.Event, error) {
	text, ok := l.replies[id]
	if !ok {
		return moltgate.Event{}, moltgate.Errorf(moltgate.ENOTFOUND, "no event %s", id)
	}
	return moltgate.MustEvent("session:test", moltgate.EventChatMessageAdded, moltgate.ChatMessageAddedData{Role: "assistant", Content: text}, moltgate.Meta{}), nil
}

// sender is a channel whose Send the test scripts: send gets the number
// of the call (from 0).
type sender struct {
	send  func(ctx context.Context, call int, msg moltgate.OutboundMessage) ([]string, error)
	mu    sync.Mutex
	calls []sendCall
}

type sendCall struct {
	at  time.Time
	msg moltgate.OutboundMessage
}

func (s *sender) Name() string { return "telegram" }
func (s *sender) Run(ctx context.Context, _ moltgate.InboundHandler) error {
	<-ctx.Done()
	return nil
}
func (s *sender) Typing(context.Context, moltgate.ChannelAddress) error { return nil }
func (s *sender) Status() moltgate.ChannelStatus {
	return moltgate.ChannelStatus{State: moltgate.ChannelRunning, LastActivity: time.Now()}
}

func (s *sender) Send(ctx context.Context, msg moltgate.OutboundMessage) ([]string, error) {
	s.mu.Lock()
	n := len(s.calls)
	s.calls = append(s.calls, sendCall{time.Now(), msg})
	s.mu.Unlock()
	return s.send(ctx, n, msg)
}

func (s *sender) sent() []sendCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func sendOK(context.Context, int, moltgate.OutboundMessage) ([]string, error) {
	return []string{"m1"}, nil
}

var (
	err502 = &moltgate.DeliveryError{Err: errors.New("502 Bad Gateway"), Retryable: true}
	err403 = &moltgate.DeliveryError{Err: errors.New("403 Forbidden: bot was blocked by the user")}
)

// approval is a delivery that needs no event to say what it says.
func approval(id string) moltgate.Delivery {
	return moltgate.Delivery{ID: id, Kind: moltgate.DeliveryApproved, To: moltgate.ChannelAddress{Channel: "telegram", ChatID: "1001"}}
}

// startOutbox starts an outbox over model that sends through ch, with
// retries a few milliseconds apart.
func startOutbox(t *testing.T, model *outboxModel, ch moltgate.Channel, tune func(o *Outbox)) *Outbox {
	t.Helper()
	o := &Outbox{Queries: model, Deliveries: model, Events: replyLog{}, Secrets: envResolver{},
		Channel: func(string) moltgate.Channel { return ch }, Configured: func(string) bool { return true },
		BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	if tune != nil {
		tune(o)
	}
	o.Start(context.Background())
	t.Cleanup(o.Close)
	return o
}

// A retried delivery goes out, and the outbox forgets when it may retry
// it once it is due: the map does not grow with every retry ever made.
func TestOutbox_RetriesAndForgetsTheWait(t *testing.T) {
	model := &outboxModel{}
	model.add(approval("d1"))
	ch := &sender{send: func(ctx context.Context, call int, msg moltgate.OutboundMessage) ([]string, error) {
		if call == 0 {
			return nil, err502
		}
		return sendOK(ctx, call, msg)
	}}
	o := startOutbox(t, model, ch, nil)
	waitUntil(t, "the delivery", model.done)
	if recs := model.recorded(); len(recs) != 2 || recs[0].err == nil || recs[0].final || recs[1].err != nil {
		t.Fatalf("records %+v, want a retryable failure then the send", recs)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.notUntil) != 0 {
		t.Fatalf("the outbox still keeps %d retry times", len(o.notUntil))
	}
}

// The platform's retry_after is waited out even when the backoff is
// shorter.
func TestOutbox_HonoursRetryAfter(t *testing.T) {
	const retryAfter = 300 * time.Millisecond
	model := &outboxModel{}
	model.add(approval("d1"))
	ch := &sender{send: func(ctx context.Context, call int, msg moltgate.OutboundMessage) ([]string, error) {
		if call == 0 {
			return nil, &moltgate.DeliveryError{Err: errors.New("429 Too Many Requests"), Retryable: true, RetryAfter: retryAfter}
		}
		return sendOK(ctx, call, msg)
	}}
	startOutbox(t, model, ch, nil)
	waitUntil(t, "the delivery", model.done)
	calls := ch.sent()
	if len(calls) != 2 {
		t.Fatalf("%d sends, want 2", len(calls))
	}
	if gap := calls[1].at.Sub(calls[0].at); gap < retryAfter {
		t.Fatalf("retried after %s, before the %s the platform asked for", gap, retryAfter)
	}
}

// The outbox gives up for good on what retrying cannot fix, and after
// MaxAttempts.
func TestOutbox_GivesUp(t *testing.T) {
	unreadable := approval("d1")
	unreadable.Kind, unreadable.RunID, unreadable.RunStatus, unreadable.ReplyEventID = moltgate.DeliveryReply, "run1", moltgate.RunCompleted, "no-such-event"
	for _, tc := range []struct {
		name      string
		delivery  moltgate.Delivery
		send      func(context.Context, int, moltgate.OutboundMessage) ([]string, error)
		notThere  bool // the channel is not configured any more
		wantSends int
		wantError string
	}{
		{"refused by the platform", approval("d1"), func(context.Context, int, moltgate.OutboundMessage) ([]string, error) { return nil, err403 }, false, 1, "blocked"},
		{"failing on every attempt", approval("d1"), func(context.Context, int, moltgate.OutboundMessage) ([]string, error) { return nil, err502 }, false, 3, "502"},
		{"for a channel no longer configured", approval("d1"), sendOK, true, 0, "no longer configured"},
		{"whose reply cannot be read", unreadable, sendOK, false, 0, "cannot read the reply of run run1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			model := &outboxModel{}
			model.add(tc.delivery)
			ch := &sender{send: tc.send}
			startOutbox(t, model, ch, func(o *Outbox) {
				o.MaxAttempts = 3
				if tc.notThere {
					o.Channel = func(string) moltgate.Channel { return nil }
					o.Configured = func(string) bool { return false }
				}
			})
			waitUntil(t, "the delivery to be given up", model.done)
			recs := model.recorded()
			last := recs[len(recs)-1]
			if !last.final || last.err == nil || !strings.Contains(last.err.Error(), tc.wantError) {
				t.Errorf("last record %+v, want a final failure mentioning %q", last, tc.wantError)
			}
			if len(recs) != max(tc.wantSends, 1) || len(ch.sent()) != tc.wantSends {
				t.Errorf("%d records and %d sends, want %d sends", len(recs), len(ch.sent()), tc.wantSends)
			}
		})
	}
}

// A channel that is configured but not running (it is restarting) is
// waited for: nothing is given up.
func TestOutbox_WaitsForAConfiguredChannel(t *testing.T) {
	model := &outboxModel{}
	model.add(approval("d1"))
	ch := &sender{send: sendOK}
	var mu sync.Mutex
	var running moltgate.Channel
	o := startOutbox(t, model, nil, func(o *Outbox) {
		o.Channel = func(string) moltgate.Channel { mu.Lock(); defer mu.Unlock(); return running }
	})
	time.Sleep(100 * time.Millisecond)
	if recs := model.recorded(); len(recs) != 0 {
		t.Fatalf("records while the channel was down: %+v", recs)
	}
	mu.Lock()
	running = ch
	mu.Unlock()
	o.Wake()
	waitUntil(t, "the delivery", model.done)
	if recs := model.recorded(); len(recs) != 1 || recs[0].err != nil {
		t.Fatalf("records %+v, want the send", recs)
	}
}

// A shutdown during a Send records the pieces that went out, so that the
// next attempt skips them; an attempt that sent nothing is not recorded.
func TestOutbox_ShutdownDuringSend(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sentIDs []string
	}{
		{"after the first piece", []string{"piece-1"}},
		{"before any piece", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			model := &outboxModel{}
			model.add(approval("d1"))
			ch := &sender{send: func(ctx context.Context, call int, msg moltgate.OutboundMessage) ([]string, error) {
				<-ctx.Done()
				return tc.sentIDs, &moltgate.DeliveryError{Err: ctx.Err(), Retryable: true}
			}}
			o := startOutbox(t, model, ch, nil)
			waitUntil(t, "the send", func() bool { return len(ch.sent()) == 1 })
			o.Close()
			recs := model.recorded()
			if len(tc.sentIDs) == 0 {
				if len(recs) != 0 {
					t.Fatalf("records %+v, want none", recs)
				}
				return
			}
			if len(recs) != 1 || !slices.Equal(recs[0].ids, tc.sentIDs) || recs[0].final {
				t.Fatalf("records %+v, want the piece sent, not final", recs)
			}
			if p := model.PendingDeliveries(); len(p) != 1 || p[0].Sent != 1 {
				t.Fatalf("pending %+v, want it with one piece sent", p)
			}
		})
	}
}

// The next attempt after a partial failure skips the pieces sent.
func TestOutbox_ResendsOnlyWhatIsMissing(t *testing.T) {
	model := &outboxModel{}
	model.add(approval("d1"))
	ch := &sender{send: func(ctx context.Context, call int, msg moltgate.OutboundMessage) ([]string, error) {
		if call == 0 {
			return []string{"piece-1", "piece-2"}, err502
		}
		return sendOK(ctx, call, msg)
	}}
	startOutbox(t, model, ch, nil)
	waitUntil(t, "the delivery", model.done)
	if calls := ch.sent(); len(calls) != 2 || calls[0].msg.Skip != 0 || calls[1].msg.Skip != 2 {
		t.Fatalf("sends %+v, want the second to skip 2 pieces", calls)
	}
}

func TestOutbox_Text(t *testing.T) {
	o := &Outbox{Events: replyLog{replies: map[string]string{"e1": "Here is the first half"}}, Secrets: envResolver{}}
	const key = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"
	reply := func(status, runError, replyEvent string) moltgate.Delivery {
		return moltgate.Delivery{Kind: moltgate.DeliveryReply, RunID: "r1", RunStatus: status, RunError: runError, ReplyEventID: replyEvent}
	}
	for _, tc := range []struct {
		name string
		d    moltgate.Delivery
		want string
	}{
		{"completed", reply(moltgate.RunCompleted, "", "e1"), "Here is the first half"},
		{"completed without a reply", reply(moltgate.RunCompleted, "", ""), ""},
		{"failed part way", reply(moltgate.RunFailed, "provider said: bad key "+key, "e1"),
			"Here is the first half\n\nSorry, I could not finish: provider said: bad key " + moltgate.RedactedMarker},
		{"failed", reply(moltgate.RunFailed, "timeout", ""), "Sorry, I could not answer: timeout"},
		{"interrupted part way", reply(moltgate.RunInterrupted, "", "e1"),
			"Here is the first half\n\nThe assistant restarted before it finished answering. Please send your message again."},
		{"aborted part way", reply(moltgate.RunAborted, "", "e1"),
			"Here is the first half\n\nI stopped before I finished answering. Please send your message again."},
		{"refused", reply(moltgate.RunAborted, "queue full, key "+key, ""),
			"I could not start on that (queue full, key " + moltgate.RedactedMarker + "). Please send it again in a moment."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := o.text(context.Background(), tc.d)
			if err != nil || got != tc.want {
				t.Errorf("text = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
