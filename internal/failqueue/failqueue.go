// Package failqueue holds the failures a loopback fake (fakediscord,
// fakeslack, faketelegram) is scripted to answer with: for each key (a
// route or an API method), a queue of answers that the next calls with
// that key take in order.
package failqueue

import "slices"

// Queue is a queue of F per key K. The zero value is empty and ready to
// use.
//
// A Queue has no lock of its own and is not safe for concurrent use: each
// fake calls Add, Next and Clear under the mutex that guards the rest of
// its state.
type Queue[K comparable, F any] struct {
	m map[K][]F
}

// Add queues n copies of f for key, after what is already queued for it.
// It does nothing when n is zero or negative.
func (q *Queue[K, F]) Add(key K, n int, f F) {
	if n <= 0 {
		return
	}
	if q.m == nil {
		q.m = map[K][]F{}
	}
	q.m[key] = append(q.m[key], slices.Repeat([]F{f}, n)...)
}

// Next removes and returns the first F queued for key. ok is false when
// nothing is queued for key; a zero F that was queued comes back with ok
// true.
func (q *Queue[K, F]) Next(key K) (f F, ok bool) {
	fs := q.m[key]
	if len(fs) == 0 {
		return f, false
	}
	f = fs[0]
	if len(fs) == 1 {
		delete(q.m, key)
	} else {
		q.m[key] = fs[1:]
	}
	return f, true
}

// Clear drops everything queued, for every key.
func (q *Queue[K, F]) Clear() {
	q.m = nil
}
