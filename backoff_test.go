package moltgate_test

import (
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{9, 15 * time.Second, 30 * time.Second},  // capped
		{70, 15 * time.Second, 30 * time.Second}, // no overflow
	} {
		for range 50 {
			if d := moltgate.Backoff(100*time.Millisecond, 30*time.Second, tc.attempt); d < tc.min || d > tc.max {
				t.Fatalf("attempt %d: %v, want %v-%v", tc.attempt, d, tc.min, tc.max)
			}
		}
	}
	if d := moltgate.Backoff(0, 0, 3); d != 0 {
		t.Fatalf("no wait configured: %v", d)
	}
}
