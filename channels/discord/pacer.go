package discord

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/disgoorg/disgo/rest"
)

// pacer is the REST client's rate limiter, in place of disgo's: it reads
// Discord's X-RateLimit-* headers and makes a request wait for its bucket
// to refill, but never longer than maxPacingWait and never to retry a
// 429 (MaxRetries 0): a longer wait, or a 429, comes back to Send as a
// retryable error with its RetryAfter, for the outbox to schedule.
//
// disgo's limiter retries 429s up to ten times inside the call, leaves a
// bucket locked for good when a context deadline falls before the reset,
// and runs a cleanup goroutine that never stops.
type pacer struct {
	mu      sync.Mutex
	buckets map[string]bucket // method + route + major parameter (the channel)
	global  time.Time         // a global rate limit lasts until then
}

type bucket struct {
	remaining int
	reset     time.Time
}

var _ rest.RateLimiter = (*pacer)(nil)

func newPacer() *pacer { return &pacer{buckets: map[string]bucket{}} }

func bucketKey(e *rest.CompiledEndpoint) string {
	return e.Endpoint.Method + " " + e.Endpoint.Route + " " + e.MajorParams
}

// MaxRetries is 0: a 429 is returned at once.
func (p *pacer) MaxRetries() int { return 0 }

// Close has nothing to stop.
func (p *pacer) Close(context.Context) {}

// Reset forgets every bucket.
func (p *pacer) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buckets = map[string]bucket{}
	p.global = time.Time{}
}

// WaitBucket waits until the endpoint's bucket has a request left, or
// fails with *rateLimitedError when that is more than maxPacingWait away.
func (p *pacer) WaitBucket(ctx context.Context, e *rest.CompiledEndpoint) error {
	wait := p.wait(bucketKey(e), time.Now())
	if wait <= 0 {
		return nil
	}
	if wait > maxPacingWait {
		return &rateLimitedError{wait: wait}
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (p *pacer) wait(key string, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	until := p.global
	if b, ok := p.buckets[key]; ok {
		if !b.reset.After(now) {
			delete(p.buckets, key) // refilled: forget it, so the map stays small
		} else if b.remaining <= 0 && b.reset.After(until) {
			until = b.reset
		}
	}
	return until.Sub(now)
}

// UnlockBucket records what the response says about the bucket. Headers
// it cannot read are ignored: the next 429 says more.
func (p *pacer) UnlockBucket(e *rest.CompiledEndpoint, rs *http.Response) error {
	if rs == nil {
		return nil
	}
	h := rs.Header
	now := time.Now()
	resetAfter, ok := seconds(h.Get("X-RateLimit-Reset-After"))
	if !ok && rs.StatusCode == http.StatusTooManyRequests {
		resetAfter, ok = seconds(h.Get("Retry-After"))
	}
	if !ok {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	reset := now.Add(resetAfter)
	if rs.StatusCode == http.StatusTooManyRequests && h.Get("X-RateLimit-Global") != "" {
		p.global = reset
		return nil
	}
	remaining := 0
	if rs.StatusCode != http.StatusTooManyRequests {
		var err error
		if remaining, err = strconv.Atoi(h.Get("X-RateLimit-Remaining")); err != nil {
			return nil
		}
	}
	p.buckets[bucketKey(e)] = bucket{remaining: remaining, reset: reset}
	if len(p.buckets) > maxBuckets {
		for k, b := range p.buckets {
			if !b.reset.After(now) {
				delete(p.buckets, k)
			}
		}
	}
	return nil
}

// maxBuckets is when UnlockBucket sweeps refilled buckets, so a bot that
// talked in many channels does not keep one per channel for ever.
const maxBuckets = 256

func seconds(s string) (time.Duration, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}
