package moltgate_test

import (
	"sync"
	"testing"
	"time"

	"github.com/moltgate/moltgate"
)

// The keeper's rules, and its use from an adapter's goroutines while the
// manager reads (under -race).
func TestStatusKeeper(t *testing.T) {
	k := moltgate.NewStatusKeeper("telegram")
	if st := k.Status(); st.Channel != "telegram" || st.State != moltgate.ChannelStopped || !st.LastActivity.IsZero() {
		t.Fatalf("new = %+v, want telegram stopped and never active", st)
	}
	k.Set(moltgate.ChannelConnecting, "")
	since := k.Status().Since
	time.Sleep(2 * time.Millisecond)
	k.Reconnecting("dial tcp: connection refused")
	st := k.Status()
	if st.State != moltgate.ChannelConnecting || st.Error != "dial tcp: connection refused" || st.Reconnects != 1 || !st.Since.Equal(since) {
		t.Fatalf("after a failed connect = %+v, want connecting since %v with the reason and 1 reconnect", st, since)
	}
	k.Identify("42", "moltbot")
	k.Set(moltgate.ChannelRunning, "")
	k.Touch()
	st = k.Status()
	if st.State != moltgate.ChannelRunning || st.Error != "" || !st.Since.After(since) || st.AccountID != "42" || st.BotName != "moltbot" || st.LastActivity.IsZero() {
		t.Fatalf("running = %+v, want a new Since, no error, the identity and a sign of life", st)
	}

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				switch i % 4 {
				case 0:
					k.Touch()
				case 1:
					k.Reconnecting("lost")
				case 2:
					k.Set(moltgate.ChannelRunning, "")
				default:
					_ = k.Status()
				}
			}
		})
	}
	wg.Wait()
	if n := k.Status().Reconnects; n != 1+2*100 {
		t.Fatalf("%d reconnects counted, want %d", n, 1+2*100)
	}
}
