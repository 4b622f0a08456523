package agent

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// Sink receives a run's progress as it happens: the gateway turns it into
// `chat` events for the connected clients. Deltas are not events in the
// log; the final message is.
type Sink interface {
	RunDelta(sessionKey, runID string, seq int, delta, cumulative string)
	RunDone(sessionKey, runID string, seq int, status, text, errMsg string)
}

// DefaultRunTimeout bounds one run, provider retries included.
const DefaultRunTimeout = 5 * time.Minute

// DefaultDeltaInterval is how often a run's streamed text is sent at most.
const DefaultDeltaInterval = 50 * time.Millisecond

// DefaultSystemPrompt is what the model is told before the conversation.
const DefaultSystemPrompt = "You are a helpful personal assistant. Answer concisely; use Markdown where it helps."

// Runner executes runs: one at a time per session (the next message in a
// session waits for the current reply), any number of sessions at once.
type Runner struct {
	Chat moltgate.ChatService
	Sink Sink
	// Models returns the models to try, primary first, then fallbacks,
	// and why configured models cannot be used.
	Models       func() Resolution
	SystemPrompt string
	Timeout      time.Duration
	// DeltaInterval coalesces streamed text: the first piece goes out at
	// once, later ones at most this often per run. Each `chat` delta carries
	// the whole reply so far, so fewer, larger frames cost far less than one
	// per token when many sessions stream at once.
	DeltaInterval time.Duration
	Logger        *slog.Logger
	// Secrets opens the credentials sealed in the transcript (a token the
	// owner pasted), which the model needs to see.
	Secrets moltgate.SecretResolver

	mu       sync.Mutex
	sessions map[string]*session
	runs     map[string]*run // by run id: queued or running
	closed   bool
	wg       sync.WaitGroup
}

type session struct {
	queue   []*run
	running bool
}

type run struct {
	sessionKey, id string
	owner          bool
	origin         *moltgate.ChannelAddress
	ctx            context.Context
	cancel         context.CancelFunc
}

// NewRunner returns a runner that records through chat and streams to sink.
func NewRunner(chat moltgate.ChatService, sink Sink, models func() Resolution) *Runner {
	return &Runner{Chat: chat, Sink: sink, Models: models, SystemPrompt: DefaultSystemPrompt, Timeout: DefaultRunTimeout, DeltaInterval: DefaultDeltaInterval,
		Logger: slog.Default(), sessions: map[string]*session{}, runs: map[string]*run{}}
}

// Enqueue schedules a run that SendMessage recorded. It starts at once
// when the session is idle, else after the runs queued before it.
func (r *Runner) Enqueue(q moltgate.QueuedRun) error {
	sessionKey, runID := q.SessionKey, q.RunID
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return moltgate.Errorf(moltgate.EUNAVAILABLE, "the agent is restarting; send again in a moment")
	}
	if _, ok := r.runs[runID]; ok {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	ru := &run{sessionKey: sessionKey, id: runID, owner: q.Owner, origin: q.Origin, ctx: ctx, cancel: cancel}
	r.runs[runID] = ru
	s := r.sessions[sessionKey]
	if s == nil {
		s = &session{}
		r.sessions[sessionKey] = s
	}
	s.queue = append(s.queue, ru)
	if !s.running {
		s.running = true
		r.wg.Add(1)
		go r.drain(sessionKey, s)
	}
	return nil
}

// Active returns the ids of the runs queued or running in a session.
func (r *Runner) Active(sessionKey string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id, ru := range r.runs {
		if ru.sessionKey == sessionKey {
			ids = append(ids, id)
		}
	}
	return ids
}

// Abort stops a run (runID) or every run of a session (runID ""). It
// returns how many runs it stopped.
func (r *Runner) Abort(sessionKey, runID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for id, ru := range r.runs {
		if (runID == "" || id == runID) && (sessionKey == "" || ru.sessionKey == sessionKey) {
			ru.cancel()
			n++
		}
	}
	return n
}

// Close aborts every run, waits for them to be recorded (bounded by ctx)
// and refuses new ones.
func (r *Runner) Close(ctx context.Context) error {
	_, err := r.stop(ctx)
	return err
}

// Restart aborts every run, waits until each is recorded, and serves again.
// It returns how many runs it aborted.
func (r *Runner) Restart(ctx context.Context) (int, error) {
	n, err := r.stop(ctx)
	r.mu.Lock()
	r.closed = false
	r.mu.Unlock()
	return n, err
}

func (r *Runner) stop(ctx context.Context) (int, error) {
	r.mu.Lock()
	r.closed = true
	n := 0
	for _, ru := range r.runs {
		ru.cancel()
		n++
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return n, nil
	case <-ctx.Done():
		return n, ctx.Err()
	}
}

func (r *Runner) drain(sessionKey string, s *session) {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		if len(s.queue) == 0 {
			s.running = false
			delete(r.sessions, sessionKey)
			r.mu.Unlock()
			return
		}
		ru := s.queue[0]
		s.queue = s.queue[1:]
		r.mu.Unlock()

		r.execute(ru)

		r.mu.Lock()
		delete(r.runs, ru.id)
		r.mu.Unlock()
		ru.cancel()
	}
}

// execute runs one reply: history from the log, the models in order until
// one answers, deltas to the sink, the result recorded in the log.
func (r *Runner) execute(ru *run) {
	meta := moltgate.Meta{Actor: "agent", Source: moltgate.SourceAgent, CorrelationID: ru.id}
	seq := 0
	var cumulative strings.Builder
	deltas := newCoalescer(r.DeltaInterval, func(text string) {
		seq++
		r.Sink.RunDelta(ru.sessionKey, ru.id, seq, text, cumulative.String())
	}, &cumulative)
	onDelta := deltas.add
	finish := func(reply *moltgate.ChatMessage, status, errMsg string) {
		deltas.stop() // every streamed token reaches clients before the end
		// Record even when the run's own context is gone (aborted).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Chat.FinishRun(ctx, ru.sessionKey, ru.id, reply, status, errMsg, meta); err != nil {
			r.Logger.Error("cannot record the end of a run", "run", ru.id, "error", err)
		}
		text := ""
		if reply != nil {
			text = reply.Content
		}
		seq++
		r.Sink.RunDone(ru.sessionKey, ru.id, seq, status, text, errMsg)
	}

	if ru.ctx.Err() != nil {
		// Stopped while it waited its turn (a shutdown or an abort):
		// aborted, not failed.
		finish(nil, moltgate.RunAborted, "")
		return
	}
	ctx, cancel := context.WithTimeout(ru.ctx, r.Timeout)
	defer cancel()
	history, err := r.Chat.Transcript(ctx, ru.sessionKey, 0)
	if err != nil {
		if ru.ctx.Err() != nil {
			finish(nil, moltgate.RunAborted, "")
			return
		}
		finish(nil, moltgate.RunFailed, "cannot read the conversation: "+moltgate.ErrorMessage(err))
		return
	}
	// A run answers its own message: messages queued after it in the
	// session (sent while an earlier reply was being written) are for the
	// runs that follow.
	for i, m := range history {
		if m.Role == "user" && m.RunID == ru.id {
			history = history[:i+1]
			break
		}
	}
	if r.Secrets != nil {
		path := moltgate.SessionStream(ru.sessionKey)
		for i := range history {
			history[i].Content = r.Secrets.OpenText(path, history[i].Content)
		}
	}
	resolved := r.Models()
	choices := resolved.Choices
	if len(choices) == 0 && len(resolved.Problems) > 0 {
		finish(nil, moltgate.RunFailed, "no model can answer: "+strings.Join(resolved.Problems, "; "))
		return
	}
	if len(choices) == 0 {
		choices = []Choice{{Name: EchoModel, Model: "echo", Provider: Echo{}}}
	}
	var lastErr error
	for _, c := range choices {
		reply, err := c.Provider.Stream(ctx, Request{Model: c.Model, System: r.SystemPrompt, Messages: history, MaxTokens: 4096}, onDelta)
		switch {
		case err == nil:
			usage := reply.Usage
			finish(&moltgate.ChatMessage{Role: "assistant", Content: reply.Text, Model: c.Name, Usage: &usage}, moltgate.RunCompleted, "")
			return
		case ru.ctx.Err() != nil:
			// Aborted: keep what was streamed, so the transcript shows what the user saw.
			var partial *moltgate.ChatMessage
			if text := deltas.streamed(); text != "" {
				partial = &moltgate.ChatMessage{Role: "assistant", Content: text, Model: c.Name}
			}
			finish(partial, moltgate.RunAborted, "")
			return
		case errors.Is(err, context.DeadlineExceeded):
			finish(nil, moltgate.RunFailed, "the model did not answer in time")
			return
		}
		lastErr = err
		r.Logger.Warn("model failed", "model", c.Name, "run", ru.id, "error", err)
		if deltas.streamed() != "" {
			break // text already reached the user: no silent switch to another model
		}
	}
	finish(nil, moltgate.RunFailed, "the model failed: "+safeError(lastErr))
}

// safeError is an error's text for users: provider errors carry no
// credentials, but are trimmed to a line.
func safeError(err error) string {
	if err == nil {
		return "unknown error"
	}
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return msg
}

// coalescer batches streamed text for one run. add and stop may be called
// from the provider's goroutine while the flush timer fires on another.
type coalescer struct {
	mu         sync.Mutex
	interval   time.Duration
	send       func(text string)
	cumulative *strings.Builder
	pending    strings.Builder
	last       time.Time
	timer      *time.Timer
	stopped    bool
}

func newCoalescer(interval time.Duration, send func(string), cumulative *strings.Builder) *coalescer {
	return &coalescer{interval: interval, send: send, cumulative: cumulative}
}

func (c *coalescer) add(text string) {
	if text == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.cumulative.WriteString(text)
	c.pending.WriteString(text)
	if wait := c.interval - time.Since(c.last); wait <= 0 {
		c.flushLocked()
	} else if c.timer == nil {
		c.timer = time.AfterFunc(wait, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.timer = nil
			if !c.stopped {
				c.flushLocked()
			}
		})
	}
}

func (c *coalescer) flushLocked() {
	if c.pending.Len() == 0 {
		return
	}
	text := c.pending.String()
	c.pending.Reset()
	c.last = time.Now()
	c.send(text)
}

// stop sends what is pending and stops sending.
func (c *coalescer) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.flushLocked()
	c.stopped = true
}

// streamed returns the text streamed so far.
func (c *coalescer) streamed() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cumulative.String()
}
