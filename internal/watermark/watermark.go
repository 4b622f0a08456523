// Package watermark is a sequence number that only moves forward and that
// goroutines can wait on: the log's last committed seq, the seq the read
// models have applied, the seq the replica holds.
package watermark

import (
	"context"
	"sync"
)

// Watermark is safe for concurrent use. The zero value is not ready: use New.
type Watermark struct {
	mu      sync.Mutex
	seq     int64
	changed chan struct{} // closed and replaced whenever seq moves
}

// New returns a watermark at seq.
func New(seq int64) *Watermark {
	return &Watermark{seq: seq, changed: make(chan struct{})}
}

// Get returns the current seq.
func (w *Watermark) Get() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq
}

// Advance moves the watermark to seq if that is forward, waking waiters.
func (w *Watermark) Advance(seq int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if seq > w.seq {
		w.seq = seq
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

// Changed returns a channel that is closed at the next Advance. Take it
// before reading what the watermark guards, so a move in between is not
// missed.
func (w *Watermark) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// Wait returns nil once the watermark is at or past seq, or ctx's error.
func (w *Watermark) Wait(ctx context.Context, seq int64) error {
	for {
		w.mu.Lock()
		done, changed := w.seq >= seq, w.changed
		w.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
