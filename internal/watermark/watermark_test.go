package watermark_test

import (
	"context"
	"testing"
	"time"

	"github.com/moltgate/moltgate/internal/watermark"
)

func TestWatermark(t *testing.T) {
	w := watermark.New(5)
	if err := w.Wait(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Wait(context.Background(), 8) }()
	w.Advance(7)
	select {
	case <-done:
		t.Fatal("woke before 8")
	case <-time.After(20 * time.Millisecond):
	}
	w.Advance(3) // backwards: ignored
	if w.Get() != 7 {
		t.Fatalf("Get = %d after a backward Advance", w.Get())
	}
	w.Advance(9)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := w.Wait(ctx, 100); err != context.DeadlineExceeded {
		t.Fatalf("Wait past a deadline = %v", err)
	}
}
