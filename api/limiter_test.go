package api

import (
	"fmt"
	"testing"
	"time"
)

// A flood of new addresses does not reset the limiter: the blocked
// address, among the most recently seen, stays blocked.
func TestFailLimiter_FloodDoesNotReset(t *testing.T) {
	l := newFailLimiter(10, time.Minute)
	l.max = 100
	now := time.Now()
	for i := 0; i < 10; i++ {
		l.fail("victim-or-attacker", now)
	}
	if !l.blocked("victim-or-attacker", now) {
		t.Fatal("not blocked after 10 failures")
	}
	for i := 0; i < 1000; i++ {
		l.fail(fmt.Sprintf("198.51.100.%d/%d", i%250, i), now.Add(time.Millisecond))
		if len(l.clients) > l.max {
			t.Fatalf("the limiter holds %d addresses, more than its %d", len(l.clients), l.max)
		}
	}
	// The flood's addresses are older than the blocked one's last failure
	// only if it keeps trying; it does:
	for i := 0; i < 1000; i++ {
		l.fail(fmt.Sprintf("203.0.113.%d", i), now.Add(2*time.Millisecond))
		if i%50 == 0 {
			l.fail("victim-or-attacker", now.Add(2*time.Millisecond))
		}
	}
	if !l.blocked("victim-or-attacker", now.Add(3*time.Millisecond)) {
		t.Fatal("a flood of other addresses unblocked an address that kept failing")
	}
	// The bucket refills with time: a minute later it may try again.
	if l.blocked("victim-or-attacker", now.Add(2*time.Minute)) {
		t.Fatal("still blocked after the window")
	}
}
