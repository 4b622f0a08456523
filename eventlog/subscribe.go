package eventlog

import (
	"context"
	"sync"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// readOnlyPoll is how often a read-only log looks for events that another
// process appended.
const readOnlyPoll = 250 * time.Millisecond

// subscribePage is how many events a subscription reads per query.
const subscribePage = 1024

// Subscription delivers, in seq order and exactly once, every event after
// the seq it was opened at: first those already stored, then new commits as
// they happen.
type Subscription struct {
	c      chan moltgate.Event
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	err error
}

// C is the channel of events. It is closed when the subscription ends; Err
// then says why (nil after the subscription's Close, ErrClosed after the
// log's).
func (s *Subscription) C() <-chan moltgate.Event { return s.c }

// Err returns the error that ended the subscription, if any.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription and waits for its goroutine.
func (s *Subscription) Close() {
	s.cancel()
	<-s.done
}

// Subscribe returns a subscription to every event with seq > fromSeq. The
// consumer must keep reading C; a slow consumer slows only itself. It ends
// when ctx does, or when the log closes.
func (l *Log) Subscribe(ctx context.Context, fromSeq int64) *Subscription {
	ctx, cancel := context.WithCancel(ctx)
	s := &Subscription{c: make(chan moltgate.Event, subscribePage), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.c)
		if err := l.follow(ctx, fromSeq, s.c); err != nil && ctx.Err() == nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
		}
	}()
	return s
}

func (l *Log) follow(ctx context.Context, pos int64, out chan<- moltgate.Event) error {
	for {
		// Take the wake-up channel before reading, so a commit that lands
		// between the read and the wait is not missed.
		changed := l.committed.Changed()
		// The page is read whole and sent after the scan: a send waits for
		// the consumer, and waiting inside the scan would hold its read
		// transaction open, so that no checkpoint could reach the end of the
		// WAL and the WAL could not start over while the consumer dawdles.
		var page []moltgate.Event
		err := l.Scan(ctx, Filter{AfterSeq: pos, Limit: subscribePage}, func(e moltgate.Event) error {
			page = append(page, e)
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range page {
			select {
			case out <- e:
			case <-ctx.Done():
				return ctx.Err()
			case <-l.done:
				return ErrClosed
			}
			pos = e.Seq
		}
		if len(page) == subscribePage || pos < l.LastSeq() {
			continue
		}
		var poll <-chan time.Time
		if l.ReadOnly {
			// Another process writes: no commit of ours wakes us, so poll.
			poll = time.After(readOnlyPoll)
		}
		select {
		case <-changed:
		case <-poll:
		case <-ctx.Done():
			return nil
		case <-l.done:
			return ErrClosed
		}
	}
}

// Follow implements moltgate.EventReader: it calls fn for every event
// after fromSeq, stored ones first and then new commits, until ctx ends
// (it returns nil), fn fails (it returns fn's error) or the log closes (it
// returns ErrClosed).
func (l *Log) Follow(ctx context.Context, fromSeq int64, fn func(moltgate.Event) error) error {
	sub := l.Subscribe(ctx, fromSeq)
	defer sub.Close()
	for e := range sub.C() {
		if err := fn(e); err != nil {
			return err
		}
	}
	return sub.Err()
}
