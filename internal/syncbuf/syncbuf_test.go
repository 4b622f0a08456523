package syncbuf_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moltgate/moltgate/internal/syncbuf"
)

// Many goroutines write whole lines at once while another reads; every
// line arrives intact and none is lost. Run with -race.
func TestBuffer_ConcurrentWrites(t *testing.T) {
	const writers, lines = 16, 100
	var b syncbuf.Buffer
	var wg sync.WaitGroup
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() { // reads while the writers write
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
				_ = b.String()
			}
		}
	}()
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				line := fmt.Sprintf("writer %02d line %03d\n", w, i)
				if n, err := b.Write([]byte(line)); n != len(line) || err != nil {
					t.Errorf("Write = %d, %v; want %d, nil", n, err, len(line))
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-readerDone

	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("got %d lines, want %d", len(got), writers*lines)
	}
	var want []string
	for w := range writers {
		for i := range lines {
			want = append(want, fmt.Sprintf("writer %02d line %03d", w, i))
		}
	}
	slices.Sort(got)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("line %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestBuffer_ZeroValue(t *testing.T) {
	var b syncbuf.Buffer
	if s := b.String(); s != "" {
		t.Errorf("zero Buffer holds %q", s)
	}
	b.Write([]byte("a"))
	b.Write([]byte("b"))
	if s := b.String(); s != "ab" {
		t.Errorf("String = %q, want %q", s, "ab")
	}
}
