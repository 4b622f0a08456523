package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
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
	// RunTool announces a tool call: in PhaseStart when the model asked
	// for it (ID, Name and Input, secrets redacted; Status empty), in
	// PhaseResult when it finished (Status, Summary or Error, Image). seq
	// orders it among the run's deltas.
	RunTool(sessionKey, runID string, seq int, phase string, call moltgate.ToolCall)
	RunDone(sessionKey, runID string, seq int, status, text, errMsg string)
}

// Phases of a tool call, for Sink.RunTool.
const (
	PhaseStart  = "start"
	PhaseResult = "result"
)

// DefaultRunTimeout bounds one run, provider retries included.
const DefaultRunTimeout = 5 * time.Minute

// DefaultDeltaInterval is how often a run's streamed text is sent at most.
const DefaultDeltaInterval = 50 * time.Millisecond

// DefaultToolRounds bounds the rounds of tool calls in one run: a model
// that asks for tools once more is stopped, so a confused model cannot
// loop until the timeout.
const DefaultToolRounds = 10

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
	// Tools are every tool the model may be offered; each says in which
	// runs (see Tool.Offered).
	Tools []Tool
	// ToolRounds bounds the rounds of tool calls in a run (0 =
	// DefaultToolRounds).
	ToolRounds int
	// Workspace holds AGENTS.md, SOUL.md, USER.md and the skills that
	// the system prompt includes (nil = none).
	Workspace moltgate.WorkspaceQueries
	// Config is the current configuration (nil = defaults): the prompt's
	// size cap and the skills' switches.
	Config func() moltgate.Config
	// Getenv reads the environment, for the skills' requirements (nil =
	// nothing is set).
	Getenv func(string) string

	mu       sync.Mutex
	sessions map[string]*session
	runs     map[string]*run // by run id: queued or running
	closed   bool            // refusing runs: closed, or a restart in progress
	shutdown bool            // closed for good: a restart does not serve again
	// draining counts the sessions whose runs are being executed; idle is
	// closed when it falls to zero. Not a WaitGroup: a restart serves again
	// while an earlier stop may still be waiting, which a WaitGroup forbids.
	draining int
	idle     chan struct{}
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
		if r.draining == 0 {
			r.idle = make(chan struct{})
		}
		r.draining++
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
	r.mu.Lock()
	r.shutdown = true
	r.mu.Unlock()
	_, err := r.stop(ctx)
	return err
}

// Restart aborts every run, waits until each is recorded, and serves again,
// unless Close closed the runner meanwhile or before. It returns how many
// runs it aborted.
func (r *Runner) Restart(ctx context.Context) (int, error) {
	n, err := r.stop(ctx)
	r.mu.Lock()
	r.closed = r.shutdown
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
	idle := r.idle
	if r.draining == 0 {
		idle = nil
	}
	r.mu.Unlock()
	if idle == nil {
		return n, nil
	}
	select {
	case <-idle:
		return n, nil
	case <-ctx.Done():
		return n, ctx.Err()
	}
}

func (r *Runner) drain(sessionKey string, s *session) {
	for {
		r.mu.Lock()
		if len(s.queue) == 0 {
			s.running = false
			delete(r.sessions, sessionKey)
			if r.draining--; r.draining == 0 {
				close(r.idle)
			}
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

// execute runs one reply: history from the log, then rounds of asking the
// model (the configured models in order until one answers) and running
// the tools it calls, until it answers without calling any. Deltas and
// tool calls go to the sink as they happen; tool calls and the result are
// recorded in the log.
func (r *Runner) execute(ru *run) {
	t := &turn{r: r, ru: ru, meta: moltgate.Meta{Actor: "agent", Source: moltgate.SourceAgent, CorrelationID: ru.id}, scope: newRunScope()}
	defer t.scope.close() // the browser tab and whatever else tools opened
	t.deltas = newCoalescer(r.DeltaInterval, func(delta, cumulative string) {
		t.seq++
		r.Sink.RunDelta(ru.sessionKey, ru.id, t.seq, delta, cumulative)
	})

	if ru.ctx.Err() != nil {
		// Stopped while it waited its turn (a shutdown or an abort):
		// aborted, not failed.
		t.finish(nil, moltgate.RunAborted, "")
		return
	}
	var cancel context.CancelFunc
	t.ctx, cancel = context.WithTimeout(ru.ctx, r.Timeout)
	defer cancel()
	history, err := r.Chat.Transcript(t.ctx, ru.sessionKey, 0)
	if err != nil {
		if ru.ctx.Err() != nil {
			t.finish(nil, moltgate.RunAborted, "")
			return
		}
		t.finish(nil, moltgate.RunFailed, "cannot read the conversation: "+moltgate.ErrorMessage(err))
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
		t.finish(nil, moltgate.RunFailed, "no model can answer: "+strings.Join(resolved.Problems, "; "))
		return
	}
	if len(choices) == 0 {
		choices = []Choice{{Name: EchoModel, Model: "echo", Provider: Echo{}}}
	}
	t.info = RunInfo{SessionKey: ru.sessionKey, RunID: ru.id, Owner: ru.owner, Origin: ru.origin}
	offered := r.offeredTools(t.info)
	t.offered = map[string]Tool{}
	for _, tool := range offered {
		t.offered[tool.Name()] = tool
	}
	var files []moltgate.WorkspaceFile
	if r.Workspace != nil {
		files = r.Workspace.WorkspaceFiles()
	}
	system := SystemPrompt(r.SystemPrompt, offered, files, r.config(), r.getenv)
	specs := toolSpecs(offered)
	msgs := modelHistory(history)

	current := 0 // the model answering; a fallback moves it on for good
	for round := 0; ; round++ {
		reply, err := t.ask(choices, &current, system, specs, msgs)
		model := choices[current].Name
		if err != nil {
			t.failed(err, model)
			return
		}
		t.usage.InputTokens += reply.Usage.InputTokens
		t.usage.OutputTokens += reply.Usage.OutputTokens
		if reply.Text != "" {
			t.texts = append(t.texts, reply.Text)
		}
		if len(reply.ToolCalls) == 0 {
			t.complete(model)
			return
		}
		if round >= r.toolRounds() {
			t.finish(t.partial(model), moltgate.RunFailed, fmt.Sprintf("the model kept calling tools: stopped after %d rounds of tool calls", r.toolRounds()))
			return
		}
		msgs = append(msgs, Message{Role: "assistant", Text: reply.Text, ToolCalls: reply.ToolCalls})
		results := Message{Role: "user"}
		for _, use := range reply.ToolCalls {
			results.Results = append(results.Results, t.runTool(use))
			if t.ctx.Err() != nil {
				break
			}
		}
		switch {
		case ru.ctx.Err() != nil:
			t.finish(t.partial(model), moltgate.RunAborted, "")
			return
		case t.ctx.Err() != nil:
			t.finish(t.partial(model), moltgate.RunFailed, "the run did not finish in time")
			return
		}
		msgs = append(msgs, results)
	}
}

// turn is the state of one run while it executes.
type turn struct {
	r       *Runner
	ru      *run
	ctx     context.Context // the run's, bounded by the timeout
	info    RunInfo
	meta    moltgate.Meta
	deltas  *coalescer
	seq     int // sink event number; changed only under the coalescer's lock
	scope   *RunScope
	offered map[string]Tool
	texts   []string // each round's text
	usage   moltgate.Usage
	skipped []string // models that failed before the one that answered, and why
	calls   int
	fresh   bool // no text streamed yet in this round
}

// ask sends the conversation to the current model and, when it fails for
// a reason the next model may not share and nothing has streamed in this
// run, to the next one (no silent switch once the user has seen text).
func (t *turn) ask(choices []Choice, current *int, system string, specs []ToolSpec, msgs []Message) (Reply, error) {
	for ; ; *current++ {
		c := choices[*current]
		req := Request{Model: c.Model, System: system, Tools: specs, Images: c.Entry.AcceptsImages(), MaxTokens: maxTokens(c.Entry)}
		req.Messages = fitWindow(msgs, system, specs, contextWindow(c.Entry), req.MaxTokens)
		t.fresh = true
		reply, err := c.Provider.Stream(t.ctx, req, t.onDelta)
		if err == nil || t.ctx.Err() != nil {
			return reply, err
		}
		reason, transient := fallbackReason(err)
		t.r.Logger.Warn("model failed", "model", c.Name, "run", t.ru.id, "error", err, "fallback", transient)
		if !transient || *current == len(choices)-1 || t.deltas.streamed() != "" {
			return reply, err
		}
		t.skipped = append(t.skipped, fmt.Sprintf("%s failed (%s)", c.Name, reason))
	}
}

// onDelta streams a piece of text, with a blank line between the text of
// one round and the next.
func (t *turn) onDelta(text string) {
	if text == "" {
		return
	}
	if t.fresh {
		t.fresh = false
		if t.deltas.streamed() != "" {
			text = "\n\n" + text
		}
	}
	t.deltas.add(text)
}

// complete records the reply of a run that ended well, after a system
// note that says which models failed first, when one did: the reply's
// Model names the one that answered.
func (t *turn) complete(model string) {
	if len(t.skipped) > 0 {
		note := strings.Join(t.skipped, "; ") + "; " + model + " answered instead."
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := t.r.Chat.Inject(ctx, t.ru.sessionKey, moltgate.ChatMessage{Role: "system", Content: note}, t.meta); err != nil {
			t.r.Logger.Error("cannot record why a fallback model answered", "run", t.ru.id, "error", err)
		}
	}
	usage := t.usage
	t.finish(&moltgate.ChatMessage{Role: "assistant", Content: strings.Join(t.texts, "\n\n"), Model: model, Usage: &usage}, moltgate.RunCompleted, "")
}

// failed ends a run whose model request failed. Whatever the reason, what
// streamed is kept as the reply, so the transcript shows what the user saw.
func (t *turn) failed(err error, model string) {
	switch {
	case t.ru.ctx.Err() != nil:
		t.finish(t.partial(model), moltgate.RunAborted, "")
	case t.ctx.Err() == context.DeadlineExceeded:
		// The run's own timeout, not a deadline inside the provider's SDK.
		t.finish(t.partial(model), moltgate.RunFailed, "the model did not answer in time")
	default:
		msg := "the model failed: " + safeError(err)
		if len(t.skipped) > 0 {
			msg += " (before it: " + strings.Join(t.skipped, "; ") + ")"
		}
		t.finish(t.partial(model), moltgate.RunFailed, msg)
	}
}

// partial is what streamed so far, as a reply, or nil.
func (t *turn) partial(model string) *moltgate.ChatMessage {
	if text := t.deltas.streamed(); text != "" {
		return &moltgate.ChatMessage{Role: "assistant", Content: text, Model: model}
	}
	return nil
}

// finish records how the run ended and tells the sink.
func (t *turn) finish(reply *moltgate.ChatMessage, status, errMsg string) {
	t.deltas.stop() // every streamed token reaches clients before the end
	// Record even when the run's own context is gone (aborted).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if reply != nil {
		reply.Origin = t.ru.origin // where the answer goes, so the log shows the conversation whole
	}
	if err := t.r.Chat.FinishRun(ctx, t.ru.sessionKey, t.ru.id, reply, status, errMsg, t.meta); err != nil {
		t.r.Logger.Error("cannot record the end of a run", "run", t.ru.id, "error", err)
	}
	text := ""
	if reply != nil {
		text = reply.Content
	}
	t.deltas.do(func() {
		t.seq++
		t.r.Sink.RunDone(t.ru.sessionKey, t.ru.id, t.seq, status, text, errMsg)
	})
}

// runTool carries out one tool call: announced, run, recorded, announced
// again with its outcome; the output goes back to the model.
func (t *turn) runTool(use ToolUse) ToolOutput {
	t.calls++
	if use.ID == "" {
		use.ID = fmt.Sprintf("call_%d", t.calls) // recording needs an id; providers always give one
	}
	rec := moltgate.ToolCall{ID: use.ID, Name: use.Name, Input: recordedInput(use.Input)}
	if r, ok := t.offered[use.Name].(InputRedactor); ok {
		rec.Input = r.RecordedInput(rec.Input)
	}
	t.emit(PhaseStart, rec)
	res, err := t.call(use)
	out := ToolOutput{CallID: use.ID, Text: res.Text, Image: res.Image}
	if err == nil {
		summary := res.Summary
		if summary == "" {
			summary = res.Text
		}
		rec.Status, rec.Summary, rec.Image = moltgate.ToolOK, moltgate.RedactCredentials(shorten(summary, maxSummary)), res.Image
	} else {
		rec.Status = moltgate.ToolError
		if isRefused(err) {
			rec.Status = moltgate.ToolRefused
		}
		switch {
		case t.ru.ctx.Err() != nil:
			err = errors.New("the run was aborted")
		case t.ctx.Err() != nil:
			err = errors.New("the run did not finish in time")
		}
		rec.Error = moltgate.RedactCredentials(shorten(err.Error(), maxSummary))
		out = ToolOutput{CallID: use.ID, Text: err.Error(), IsError: true}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := t.r.Chat.RecordToolCall(ctx, t.ru.sessionKey, t.ru.id, rec, t.meta); err != nil {
		t.r.Logger.Error("cannot record a tool call", "run", t.ru.id, "tool", use.Name, "error", err)
	}
	t.emit(PhaseResult, rec)
	return out
}

// call runs a tool the run was offered, and refuses the others.
func (t *turn) call(use ToolUse) (ToolResult, error) {
	tool, ok := t.offered[use.Name]
	if !ok {
		for _, known := range t.r.Tools {
			if known.Name() != use.Name {
				continue
			}
			why := known.Offered(t.info)
			if isRefused(why) {
				return ToolResult{}, why
			}
			if why == nil {
				why = errors.New("it was not offered when the run started")
			}
			return ToolResult{}, Refusef("%s is not available in this run: %v", use.Name, why)
		}
		names := make([]string, 0, len(t.offered))
		for name := range t.offered {
			names = append(names, name)
		}
		sort.Strings(names)
		return ToolResult{}, fmt.Errorf("there is no tool named %q (the tools are: %s)", use.Name, strings.Join(names, ", "))
	}
	if raw := strings.TrimSpace(string(use.Input)); raw != "" && (!json.Valid(use.Input) || raw[0] != '{') {
		return ToolResult{}, errors.New("the input must be a JSON object")
	}
	return tool.Run(t.ctx, Call{RunInfo: t.info, ID: use.ID, Input: inputObject(use.Input), Scope: t.scope})
}

// emit announces a tool call to the sink, after the text streamed before it.
func (t *turn) emit(phase string, rec moltgate.ToolCall) {
	t.deltas.do(func() {
		t.seq++
		t.r.Sink.RunTool(t.ru.sessionKey, t.ru.id, t.seq, phase, rec)
	})
}

// modelHistory is the transcript as the model reads it: the user's and
// the assistant's messages. Tool calls of earlier runs and system notes
// are left out: the replies that followed them say what came of them.
func modelHistory(history []moltgate.ChatMessage) []Message {
	var msgs []Message
	for _, m := range history {
		if (m.Role == "user" || m.Role == "assistant") && strings.TrimSpace(m.Content) != "" {
			msgs = append(msgs, Message{Role: m.Role, Text: m.Content})
		}
	}
	return msgs
}

// offeredTools are the tools a run is offered.
func (r *Runner) offeredTools(info RunInfo) []Tool {
	var out []Tool
	for _, t := range r.Tools {
		if err := t.Offered(info); err == nil {
			out = append(out, t)
		}
	}
	return out
}

func (r *Runner) toolRounds() int {
	if r.ToolRounds > 0 {
		return r.ToolRounds
	}
	return DefaultToolRounds
}

func (r *Runner) config() moltgate.Config {
	if r.Config == nil {
		return moltgate.Config{}
	}
	return r.Config()
}

func (r *Runner) getenv(name string) string {
	if r.Getenv == nil {
		return ""
	}
	return r.Getenv(name)
}

// coalescer batches streamed text for one run. add and stop may be called
// from the provider's goroutine while the flush timer fires on another.
type coalescer struct {
	mu         sync.Mutex
	interval   time.Duration
	send       func(delta, cumulative string) // called under mu
	cumulative strings.Builder                // all text added
	pending    strings.Builder                // text added since the last send
	last       time.Time
	timer      *time.Timer
	stopped    bool
}

func newCoalescer(interval time.Duration, send func(delta, cumulative string)) *coalescer {
	return &coalescer{interval: interval, send: send}
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
	c.send(text, c.cumulative.String())
}

// do sends what is pending, then runs fn, before any later text is sent:
// an event that must come after the text streamed so far (a tool call)
// goes out in order.
func (c *coalescer) do(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.flushLocked()
	fn()
}

// stop sends what is pending and stops sending.
func (c *coalescer) stop() { c.do(func() { c.stopped = true }) }

// streamed returns the text streamed so far.
func (c *coalescer) streamed() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cumulative.String()
}
