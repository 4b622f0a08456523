package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

func TestCoalescer(t *testing.T) {
	var mu sync.Mutex
	var sent []string
	c := newCoalescer(50*time.Millisecond, func(delta, cumulative string) {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, delta)
		if all := strings.Join(sent, ""); cumulative != all {
			t.Errorf("cumulative %q, want %q", cumulative, all)
		}
	})
	for _, w := range strings.Fields("a b c d e f g h") {
		c.add(w + " ")
	}
	mu.Lock()
	if len(sent) != 1 || sent[0] != "a " {
		t.Fatalf("first piece should go at once, alone: %q", sent)
	}
	mu.Unlock()
	// The timer flushes the rest as one piece.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(sent)
		mu.Unlock()
		if n == 2 || time.Now().After(deadline) {
			break
		}
	}
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

type failingProvider struct{ err error }

func (f failingProvider) Stream(context.Context, Request, func(string)) (Reply, error) {
	return Reply{}, f.err
}

func runOnce(t *testing.T, choices []Choice, timeout time.Duration) *recorder {
	t.Helper()
	return runResolved(t, Resolution{Choices: choices}, timeout)
}

func runResolved(t *testing.T, res Resolution, timeout time.Duration) *recorder {
	t.Helper()
	rec := newRecorder()
	r := NewRunner(rec, rec, func() Resolution { return res })
	if timeout > 0 {
		r.Timeout = timeout
	}
	runOn(t, r, rec, moltgate.QueuedRun{})
	return rec
}

// An error the runner does not recognise as the provider's service failing
// is reported, not hidden behind a fallback.
func TestRunner_UnknownErrorsAreNotFallenBackFrom(t *testing.T) {
	rec := runOnce(t, []Choice{
		{Name: "a/primary", Model: "primary", Provider: failingProvider{errors.New("500 Internal Server Error")}},
		{Name: "echo/echo", Model: "echo", Provider: Echo{}},
	}, 0)
	if len(rec.replies) != 0 || rec.finished[0] != moltgate.RunFailed+":the model failed: 500 Internal Server Error" {
		t.Fatalf("finished %v replies %v", rec.finished, rec.replies)
	}
}

func TestRunner_AllModelsFail(t *testing.T) {
	rec := runOnce(t, []Choice{{Name: "a/m", Model: "m", Provider: failingProvider{errors.New("429 Too Many Requests\nbody")}}}, 0)
	if len(rec.finished) != 1 || rec.finished[0] != moltgate.RunFailed+":the model failed: 429 Too Many Requests" {
		t.Fatalf("finished %v", rec.finished)
	}
}

// A run that times out keeps the text the user saw stream (the echo
// model's first word) as its reply.
func TestRunner_Timeout(t *testing.T) {
	rec := runOnce(t, []Choice{{Name: "slow/m", Model: "m", Provider: Echo{Delay: time.Second}}}, 100*time.Millisecond)
	if len(rec.finished) != 1 || rec.finished[0] != moltgate.RunFailed+":the model did not answer in time" {
		t.Fatalf("finished %v", rec.finished)
	}
	if len(rec.replies) != 1 || rec.replies[0].Content != "You " || rec.replies[0].Model != "slow/m" {
		t.Fatalf("replies %+v, want the streamed text", rec.replies)
	}
}

// streamThenFail streams some text, then fails.
type streamThenFail struct {
	text string
	err  error
}

func (s streamThenFail) Stream(_ context.Context, _ Request, onDelta func(string)) (Reply, error) {
	onDelta(s.text)
	return Reply{}, s.err
}

// A model that fails after it streamed text: the run fails, and the text
// the user saw is kept as its reply.
func TestRunner_FailureKeepsStreamedText(t *testing.T) {
	rec := runOnce(t, []Choice{{Name: "a/m", Model: "m", Provider: streamThenFail{"Half an ans", errors.New("stream reset")}}}, 0)
	if len(rec.finished) != 1 || rec.finished[0] != moltgate.RunFailed+":the model failed: stream reset" {
		t.Fatalf("finished %v", rec.finished)
	}
	if len(rec.replies) != 1 || rec.replies[0].Content != "Half an ans" || rec.replies[0].Model != "a/m" {
		t.Fatalf("replies %+v, want the streamed text", rec.replies)
	}
}

// An SDK error that wraps context.DeadlineExceeded (a timeout of its own)
// while the run still has time is the model failing, not the run's
// timeout.
func TestRunner_ProviderDeadlineIsNotTheRunTimeout(t *testing.T) {
	rec := runOnce(t, []Choice{{Name: "a/m", Model: "m", Provider: failingProvider{fmt.Errorf("read: %w", context.DeadlineExceeded)}}}, 0)
	if len(rec.finished) != 1 || rec.finished[0] != moltgate.RunFailed+":the model failed: read: context deadline exceeded" {
		t.Fatalf("finished %v", rec.finished)
	}
}

// A run that cannot read its conversation fails and says why, in words
// meant for users (an internal error's text stays in the log).
func TestRunner_TranscriptUnreadable(t *testing.T) {
	for err, want := range map[error]string{
		moltgate.Errorf(moltgate.EUNAVAILABLE, "the event log is read-only"): "cannot read the conversation: the event log is read-only",
		errors.New("open /var/lib/moltgate/log.db: permission denied"):       "cannot read the conversation: internal error",
	} {
		rec := newRecorder()
		rec.readErr = err
		runOn(t, newRunner(Choice{Name: "a/m", Model: "m", Provider: Echo{}}), rec, moltgate.QueuedRun{})
		if len(rec.finished) != 1 || rec.finished[0] != moltgate.RunFailed+":"+want || len(rec.replies) != 0 {
			t.Errorf("finished %v replies %+v, want %q", rec.finished, rec.replies, want)
		}
	}
}

// A configured model whose key is missing says so, instead of the echo
// model answering as if nothing were configured.
func TestRunner_MissingKeyIsReported(t *testing.T) {
	rec := runResolved(t, Resolution{Problems: []string{"deepseek/deepseek-chat: its key is missing: the environment variable DEEPSEEK_API_KEY is not set"}}, 0)
	if len(rec.finished) != 1 || !strings.Contains(rec.finished[0], "DEEPSEEK_API_KEY is not set") || len(rec.replies) != 0 {
		t.Fatalf("finished %v replies %v", rec.finished, rec.replies)
	}
}

// A run stopped while it waited for its turn (a shutdown) is aborted,
// not failed.
func TestRunner_QueuedRunsAreAbortedOnClose(t *testing.T) {
	rec := newRecorder()
	blocked := make(chan struct{})
	r := NewRunner(rec, &multiSink{}, func() Resolution {
		return Resolution{Choices: []Choice{{Name: "slow/m", Model: "m", Provider: blockingProvider{blocked}}}}
	})
	for _, id := range []string{"run1", "run2", "run3"} {
		if err := r.Enqueue(moltgate.QueuedRun{SessionKey: "s", RunID: id}); err != nil {
			t.Fatal(err)
		}
	}
	<-blocked // run1 is running, run2 and run3 wait
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.finished) != 3 {
		t.Fatalf("finished %v", rec.finished)
	}
	for _, f := range rec.finished {
		if f != moltgate.RunAborted+":" {
			t.Fatalf("finished %v: every run should be aborted", rec.finished)
		}
	}
	if err := r.Enqueue(moltgate.QueuedRun{SessionKey: "s", RunID: "run4"}); moltgate.ErrorCode(err) != moltgate.EUNAVAILABLE {
		t.Fatalf("enqueue after close = %v", err)
	}
}

type multiSink struct{}

func (multiSink) RunDelta(string, string, int, string, string)           {}
func (multiSink) RunTool(string, string, int, string, moltgate.ToolCall) {}
func (multiSink) RunDone(string, string, int, string, string, string)    {}

// blockingProvider tells it started, then waits for the run to be stopped.
type blockingProvider struct{ started chan struct{} }

func (b blockingProvider) Stream(ctx context.Context, _ Request, _ func(string)) (Reply, error) {
	close(b.started)
	<-ctx.Done()
	return Reply{}, ctx.Err()
}

// A runner that Close closed stays closed through a Restart (a restart
// racing the shutdown).
func TestRunner_RestartAfterCloseStaysClosed(t *testing.T) {
	r := NewRunner(newRecorder(), multiSink{}, func() Resolution { return Resolution{} })
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Enqueue(moltgate.QueuedRun{SessionKey: "s", RunID: "run1"}); moltgate.ErrorCode(err) != moltgate.EUNAVAILABLE {
		t.Fatalf("enqueue after close and restart = %v", err)
	}
}

// finishCounter is a ChatService that counts how often each run finished.
type finishCounter struct {
	*recorder
	byRun map[string]int
}

func (c *finishCounter) FinishRun(_ context.Context, _, runID string, _ *moltgate.ChatMessage, _, _ string, _ moltgate.Meta) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byRun[runID]++
	return nil
}

// Enqueue, Abort, Active and Restart at once, from many goroutines (run
// it with -race): every run accepted finishes exactly once, and none that
// was refused runs.
func TestRunner_ConcurrentUse(t *testing.T) {
	chat := &finishCounter{recorder: newRecorder(), byRun: map[string]int{}}
	r := NewRunner(chat, multiSink{}, func() Resolution {
		return Resolution{Choices: []Choice{{Name: EchoModel, Model: "echo", Provider: Echo{Delay: time.Millisecond}}}}
	})
	r.DeltaInterval = time.Millisecond
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := map[string]bool{}
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				session, id := fmt.Sprint("s", i%3), fmt.Sprint("run", g, "-", i)
				if r.Enqueue(moltgate.QueuedRun{SessionKey: session, RunID: id}) == nil {
					mu.Lock()
					accepted[id] = true
					mu.Unlock()
				}
				if i%7 == 0 {
					r.Abort(session, "")
				}
				r.Active(session)
				if g == 0 && i%20 == 0 {
					if _, err := r.Restart(context.Background()); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	chat.mu.Lock()
	defer chat.mu.Unlock()
	for id, n := range chat.byRun {
		if n != 1 || !accepted[id] {
			t.Errorf("run %s finished %d times (accepted: %v)", id, n, accepted[id])
		}
	}
	for id := range accepted {
		if chat.byRun[id] == 0 {
			t.Errorf("accepted run %s never finished", id)
		}
	}
}
