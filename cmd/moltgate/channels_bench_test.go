package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltgate/moltgate/internal/faketelegram"
)

// BenchmarkChannelReply measures a chat-platform message's round trip
// through the gateway: the platform delivers a DM (long poll, gateway
// event or socket-mode envelope) → the router records it → the run (the
// echo model, no delay) → the outbox sends the reply → the platform has
// it. One message at a time; p50 and p99 over b.N.
func BenchmarkChannelReply(b *testing.B) {
	for _, newPlatform := range platforms {
		p := newPlatform(b)
		b.Run(p.name, func(b *testing.B) {
			_, env := testEnv(b, p.env("1001"))
			g := mustOpenGateway(b, env)
			defer g.close(context.Background())
			waitFor(b, "running", func() bool { return channelState(g, p.name) == "running" })
			lat := make([]time.Duration, 0, b.N)
			// The fake outlives one run of this function (-count, b.N
			// rounds): a reply from an earlier one must not count.
			tag := time.Now().UnixNano()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				text := fmt.Sprintf("ping %d-%d", tag, i)
				want := "You said: " + text
				start := time.Now()
				p.dm("1001", "Owner", text)
				for count(p.sent(), want) == 0 {
					time.Sleep(200 * time.Microsecond)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkChannelLoad sends 1,000 Telegram DMs from 100 senders at once,
// in three rounds, and waits until every one is answered: it reports the
// time of each round, checks that no reply is missing or doubled, and
// reports the heap after a GC after each round: memory is flat when later
// rounds leave about what the first did (the read models keep a session
// per sender, not a record per message). The fake forgets what it saw
// after each round, so the heap is the gateway's (and the test's).
func BenchmarkChannelLoad(b *testing.B) {
	for i := 0; i < b.N; i++ {
		f := faketelegram.New(b)
		_, env := testEnv(b, map[string]string{"TELEGRAM_BOT_TOKEN": f.Token, "TELEGRAM_API_URL": f.URL, "TELEGRAM_DM_POLICY": "open"})
		g := mustOpenGateway(b, env)
		waitFor(b, "running", func() bool { return channelState(g, "telegram") == "running" })
		for round := 1; round <= 3; round++ {
			start := time.Now()
			var wg sync.WaitGroup
			for s := 0; s < 100; s++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for m := 0; m < 10; m++ {
						f.DM(faketelegram.User{ID: int64(5000 + s), FirstName: fmt.Sprint("sender ", s)}, fmt.Sprintf("round %d message %d from %d", round, m, s))
					}
				}()
			}
			wg.Wait()
			deadline := time.Now().Add(5 * time.Minute)
			for len(f.Sent()) < 1000 {
				if time.Now().After(deadline) {
					b.Fatalf("%d of 1000 answered", len(f.Sent()))
				}
				time.Sleep(10 * time.Millisecond)
			}
			elapsed := time.Since(start)
			time.Sleep(500 * time.Millisecond) // a duplicate would show here
			seen := map[string]int{}
			for _, m := range f.Sent() {
				line, _, _ := strings.Cut(m.Text, "\n")
				seen[line]++
			}
			for s := 0; s < 100; s++ {
				for m := 0; m < 10; m++ {
					if n := seen[fmt.Sprintf("You said: round %d message %d from %d", round, m, s)]; n != 1 {
						b.Fatalf("round %d message %d from %d answered %d times", round, m, s, n)
					}
				}
			}
			f.Forget() // the heap is the gateway's, not the fake's record of it
			b.ReportMetric(elapsed.Seconds(), fmt.Sprintf("s-round%d", round))
			b.ReportMetric(float64(heapAfterGC())/(1<<20), fmt.Sprintf("heap-MB-after-round%d", round))
		}
		g.close(context.Background())
	}
}

func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
