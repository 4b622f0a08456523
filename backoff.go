package moltgate

import (
	"math/rand/v2"
	"time"
)

// Backoff is the wait before retry number attempt (from 0): base doubled
// per attempt up to max, then drawn at random between half and all of
// it, so that clients cut off together do not come back together. The
// chat adapters' reconnects and the outbox's retries use it.
func Backoff(base, max time.Duration, attempt int) time.Duration {
	d := max
	if base > 0 && attempt < 32 && base < max>>min(attempt, 62) {
		d = base << attempt
	}
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}
