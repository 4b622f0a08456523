package agent

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCoalescer(t *testing.T) {
	var mu sync.Mutex
	var sent []string
	var cumulative strings.Builder
	c := newCoalescer(50*time.Millisecond, func(s string) { mu.Lock(); sent = append(sent, s); mu.Unlock() }, &cumulative)
	for _, w := range strings.Fields("a b c d e f g h") {
		c.add(w + " ")
	}
	mu.Lock()
	if len(sent) != 1 || sent[0] != "a " {
		t.Fatalf("first piece should go at once, alone: %q", sent)
	}
	mu.Unlock()
	time.Sleep(120 * time.Millisecond) // the timer flushes the rest
	mu.Lock()
	if len(sent) != 2 || sent[1] != "b c d e f g h " {
		t.Fatalf("sent %q", sent)
	}
	mu.Unlock()
	c.add("tail")
	c.stop()
	if got := strings.Join(sent, ""); got != "a b c d e f g h tail" || c.streamed() != got {
		t.Fatalf("sent %q, streamed %q", got, c.streamed())
	}
	c.add("after stop")
	if strings.Contains(strings.Join(sent, ""), "after") {
		t.Fatal("sent after stop")
	}
}
