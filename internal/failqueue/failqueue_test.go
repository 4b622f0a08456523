package failqueue_test

import (
	"testing"

	"github.com/moltgate/moltgate/internal/failqueue"
)

// next pops key and fails the test unless it gives want.
func next(t *testing.T, q *failqueue.Queue[string, int], key string, want int) {
	t.Helper()
	if got, ok := q.Next(key); !ok || got != want {
		t.Fatalf("Next(%q) = %d, %v; want %d, true", key, got, ok, want)
	}
}

// empty fails the test unless nothing is queued for key.
func empty(t *testing.T, q *failqueue.Queue[string, int], key string) {
	t.Helper()
	if got, ok := q.Next(key); ok {
		t.Fatalf("Next(%q) = %d, true; want nothing queued", key, got)
	}
}

func TestQueue_ZeroValueIsEmpty(t *testing.T) {
	var q failqueue.Queue[string, int]
	empty(t, &q, "a")
	q.Clear()
	empty(t, &q, "a")
}

// Add appends n copies after what is queued; Next serves them in order.
func TestQueue_OrderAndCopies(t *testing.T) {
	var q failqueue.Queue[string, int]
	q.Add("a", 2, 1)
	q.Add("a", 1, 2)
	q.Add("a", 3, 3)
	for _, want := range []int{1, 1, 2, 3, 3, 3} {
		next(t, &q, "a", want)
	}
	empty(t, &q, "a")

	// The queue works again after it ran empty.
	q.Add("a", 1, 4)
	next(t, &q, "a", 4)
	empty(t, &q, "a")
}

// A queued zero value is served like any other (the fakes use it to let
// a call through), and n <= 0 queues nothing.
func TestQueue_ZeroEntriesAndCounts(t *testing.T) {
	var q failqueue.Queue[string, int]
	q.Add("a", 0, 7)
	q.Add("a", -1, 7)
	empty(t, &q, "a")
	q.Add("a", 1, 0)
	q.Add("a", 1, 5)
	next(t, &q, "a", 0)
	next(t, &q, "a", 5)
	empty(t, &q, "a")
}

func TestQueue_KeysAreIndependent(t *testing.T) {
	var q failqueue.Queue[string, int]
	q.Add("a", 2, 1)
	q.Add("b", 1, 2)
	next(t, &q, "a", 1)
	next(t, &q, "b", 2)
	empty(t, &q, "b")
	empty(t, &q, "c")
	next(t, &q, "a", 1)
	empty(t, &q, "a")
}

func TestQueue_Clear(t *testing.T) {
	var q failqueue.Queue[string, int]
	q.Add("a", 2, 1)
	q.Add("b", 1, 2)
	q.Clear()
	empty(t, &q, "a")
	empty(t, &q, "b")
	q.Add("a", 1, 3)
	next(t, &q, "a", 3)
	empty(t, &q, "a")
}
