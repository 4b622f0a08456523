package channels

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// Defaults for the outbox's retries.
const (
	DefaultMaxAttempts = 8
	DefaultBaseBackoff = time.Second
	DefaultMaxBackoff  = 5 * time.Minute
)

// Outbox delivers what the channels owe their chats (replies, pairing
// codes, approvals), as the outbox read model lists them. A delivery is
// retried with backoff on 429 (after the platform's retry_after) and 5xx,
// and recorded as channel.delivery.sent or .failed. Deliveries to one
// chat go out in order; different chats do not wait for each other.
//
// After a crash or a shutdown the read model still lists what was not
// recorded as sent, so it is delivered then: at least once. The pieces of
// a long reply that were recorded (also those of an attempt a shutdown
// cut short) are not sent again; a piece is sent twice only when its
// record is lost: a crash between the platform's answer and the record,
// a shutdown during the request, a record that fails.
type Outbox struct {
	Queries    moltgate.OutboxQueries
	Deliveries moltgate.DeliveryService
	// Events wakes the outbox when something is appended and reads the
	// replies it delivers; WaitFor waits until the read models (the
	// pending deliveries) have applied an event.
	Events  moltgate.EventReader
	WaitFor func(ctx context.Context, seq int64) error
	// Channel returns the running adapter of a channel (nil when it is not
	// running); Configured says whether it is enabled at all.
	Channel    func(name string) moltgate.Channel
	Configured func(name string) bool
	// Secrets opens the credentials sealed in a reply before it is sent.
	Secrets     moltgate.SecretResolver
	MaxAttempts int
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	Logger      *slog.Logger

	mu       sync.Mutex
	busy     map[string]bool      // chats with a delivery in flight
	notUntil map[string]time.Time // delivery id → no retry before
	wake     chan struct{}
	wg       sync.WaitGroup
	cancel   context.CancelFunc
}

// Start delivers until Close.
func (o *Outbox) Start(ctx context.Context) {
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.BaseBackoff == 0 {
		o.BaseBackoff = DefaultBaseBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.busy, o.notUntil, o.wake = map[string]bool{}, map[string]time.Time{}, make(chan struct{}, 1)
	ctx, o.cancel = context.WithCancel(ctx)
	o.wg.Add(2)
	go func() {
		defer o.wg.Done()
		_ = o.Events.Follow(ctx, o.Events.LastSeq(), func(e moltgate.Event) error {
			if o.WaitFor != nil {
				_ = o.WaitFor(ctx, e.Seq)
			}
			o.Wake()
			return nil
		})
	}()
	go func() { defer o.wg.Done(); o.loop(ctx) }()
}

// Wake makes the outbox look for work now (a channel came up).
func (o *Outbox) Wake() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Close stops delivering and waits for deliveries in flight.
func (o *Outbox) Close() {
	if o.cancel != nil {
		o.cancel()
		o.wg.Wait()
	}
}

func (o *Outbox) loop(ctx context.Context) {
	// A poll now and then catches channels that came up and retries that
	// fell due while nothing else happened.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		o.dispatch(ctx)
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		case <-tick.C:
		}
	}
}

// dispatch starts the first due delivery of every chat that has none in
// flight.
func (o *Outbox) dispatch(ctx context.Context) {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	seen := map[string]bool{} // chats whose oldest delivery this pass has looked at
	for _, d := range o.Queries.PendingDeliveries() {
		chat := d.To.Channel + "\x00" + d.To.ChatID
		if o.busy[chat] || seen[chat] {
			continue // later deliveries to a chat wait for its oldest
		}
		seen[chat] = true
		if until, ok := o.notUntil[d.ID]; ok {
			if now.Before(until) {
				continue
			}
			delete(o.notUntil, d.ID) // due: the wait is over
		}
		ch := o.Channel(d.To.Channel)
		if ch == nil {
			if !o.Configured(d.To.Channel) {
				o.start(ctx, chat, d, nil) // given up: the channel is gone
			}
			continue // it is starting or reconnecting: wait for it
		}
		o.start(ctx, chat, d, ch)
	}
}

// start delivers d in the background. Callers hold o.mu.
func (o *Outbox) start(ctx context.Context, chat string, d moltgate.Delivery, ch moltgate.Channel) {
	o.busy[chat] = true
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.deliver(ctx, d, ch)
		o.mu.Lock()
		delete(o.busy, chat)
		o.mu.Unlock()
		o.Wake()
	}()
}

func (o *Outbox) deliver(ctx context.Context, d moltgate.Delivery, ch moltgate.Channel) {
	log := o.Logger.With("delivery", d.ID, "kind", d.Kind, "channel", d.To.Channel, "chat", d.To.ChatID)
	if ch == nil {
		o.record(ctx, d, nil, fmt.Errorf("the %s channel is no longer configured", d.To.Channel), true, log)
		return
	}
	text, err := o.text(ctx, d)
	if err != nil {
		o.record(ctx, d, nil, err, true, log)
		return
	}
	if text == "" { // a completed run without a reply: nothing to say
		o.record(ctx, d, nil, nil, false, log)
		return
	}
	ids, err := ch.Send(ctx, moltgate.OutboundMessage{ChannelAddress: d.To, Text: text, ReplyToID: d.ReplyToID, Skip: d.Sent})
	if err == nil {
		o.record(ctx, d, ids, nil, false, log)
		return
	}
	if ctx.Err() != nil {
		// Shutting down: it stays pending and goes out after the restart,
		// after the pieces already sent, once they are recorded.
		if len(ids) > 0 {
			o.record(ctx, d, ids, err, false, log)
		}
		return
	}
	de := moltgate.AsDeliveryError(err)
	final := !de.Retryable || d.Attempts+1 >= o.MaxAttempts
	if !final {
		wait := max(de.RetryAfter, moltgate.Backoff(o.BaseBackoff, o.MaxBackoff, d.Attempts))
		o.mu.Lock()
		o.notUntil[d.ID] = time.Now().Add(wait)
		o.mu.Unlock()
		log.Warn("delivery failed, will retry", "attempt", d.Attempts+1, "in", wait.Round(time.Millisecond), "error", err)
	} else {
		log.Error("delivery failed for good", "attempt", d.Attempts+1, "error", err)
	}
	o.record(ctx, d, ids, err, final, log)
}

func (o *Outbox) record(ctx context.Context, d moltgate.Delivery, ids []string, sendErr error, final bool, log *slog.Logger) {
	if err := o.Deliveries.RecordDelivery(context.WithoutCancel(ctx), d, ids, sendErr, final); err != nil {
		log.Error("cannot record a delivery", "error", err)
	}
}

// text is what a delivery says.
func (o *Outbox) text(ctx context.Context, d moltgate.Delivery) (string, error) {
	switch d.Kind {
	case moltgate.DeliveryPairingCode:
		return "Hi! I don't know you yet. Your pairing code is " + d.Code +
			". Ask the owner of this assistant to approve it; once they do, write again (the code is valid for an hour).", nil
	case moltgate.DeliveryApproved:
		return "You're approved: you can talk to the assistant now. Send your message again.", nil
	}
	var reply string
	if d.ReplyEventID != "" {
		e, err := o.Events.Get(ctx, d.ReplyEventID)
		if err != nil {
			return "", fmt.Errorf("cannot read the reply of run %s: %w", d.RunID, err)
		}
		var m moltgate.ChatMessageAddedData
		if err := e.Decode(&m); err != nil {
			return "", err
		}
		reply = o.Secrets.OpenText(moltgate.SessionStream(d.SessionKey), m.Content)
	}
	note := runNote(d, reply != "")
	if reply == "" || note == "" {
		return reply + note, nil
	}
	return reply + "\n\n" + note, nil
}

// runNote tells the chat that a run did not complete ("" when it did),
// after the part of the reply it wrote, if any. The run's error is for
// the people in the chat: it shows no credential.
func runNote(d moltgate.Delivery, partial bool) string {
	runError := moltgate.RedactCredentials(d.RunError)
	switch d.RunStatus {
	case moltgate.RunCompleted:
		return ""
	case moltgate.RunInterrupted:
		return "The assistant restarted before it finished answering. Please send your message again."
	case moltgate.RunAborted:
		if d.RunError != "" {
			return "I could not start on that (" + runError + "). Please send it again in a moment."
		}
		return "I stopped before I finished answering. Please send your message again."
	}
	if partial {
		return "Sorry, I could not finish: " + runError
	}
	return "Sorry, I could not answer: " + runError
}
