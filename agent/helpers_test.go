package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/internal/fakellm"
)

// recorder is a ChatService and Sink that remembers what a run did.
type recorder struct {
	mu         sync.Mutex
	transcript []moltgate.ChatMessage
	finished   []string // status:error
	replies    []moltgate.ChatMessage
	tools      []moltgate.ToolCall
	injected   []moltgate.ChatMessage
	events     []string // what the sink saw, in order
	toolEvents []moltgate.ToolCall
	lastSeq    int
	seqOrdered bool
	done       chan struct{}
	readErr    error // non-nil: Transcript fails with it
}

func newRecorder(transcript ...moltgate.ChatMessage) *recorder {
	if len(transcript) == 0 {
		transcript = []moltgate.ChatMessage{{Role: "user", Content: "hi"}}
	}
	return &recorder{transcript: transcript, seqOrdered: true, done: make(chan struct{})}
}

func (r *recorder) SendMessage(context.Context, moltgate.RunRequest, moltgate.Meta) (moltgate.RunReceipt, error) {
	return moltgate.RunReceipt{}, nil
}
func (r *recorder) FinishRun(_ context.Context, _, _ string, reply *moltgate.ChatMessage, status, errMsg string, _ moltgate.Meta) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished = append(r.finished, status+":"+errMsg)
	if reply != nil {
		r.replies = append(r.replies, *reply)
	}
	return nil
}
func (r *recorder) RecordToolCall(_ context.Context, _, _ string, call moltgate.ToolCall, meta moltgate.Meta) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if meta.Actor != "agent" || meta.Source != moltgate.SourceAgent {
		return fmt.Errorf("meta %+v", meta)
	}
	r.tools = append(r.tools, call)
	return nil
}
func (r *recorder) Inject(_ context.Context, _ string, msg moltgate.ChatMessage, _ moltgate.Meta) (moltgate.ChatMessage, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.injected = append(r.injected, msg)
	return msg, nil
}
func (r *recorder) ResetSession(context.Context, string, moltgate.Meta) (string, error) {
	return "", nil
}
func (r *recorder) Transcript(context.Context, string, int) ([]moltgate.ChatMessage, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.readErr != nil {
		return nil, r.readErr
	}
	return append([]moltgate.ChatMessage(nil), r.transcript...), nil
}

func (r *recorder) seq(n int) {
	if n <= r.lastSeq {
		r.seqOrdered = false
	}
	r.lastSeq = n
}
func (r *recorder) RunDelta(_, _ string, seq int, delta, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq(seq)
	r.events = append(r.events, "delta")
}
func (r *recorder) RunTool(_, _ string, seq int, phase string, call moltgate.ToolCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq(seq)
	r.events = append(r.events, fmt.Sprintf("tool %s %s %s %s", phase, call.ID, call.Name, call.Status))
	r.toolEvents = append(r.toolEvents, call)
}
func (r *recorder) RunDone(_, _ string, seq int, status, _, _ string) {
	r.mu.Lock()
	r.seq(seq)
	r.events = append(r.events, "done "+status)
	r.mu.Unlock()
	close(r.done)
}

// toolEventsOnly drops the deltas from the sink's events.
func (r *recorder) toolEventsOnly() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e != "delta" {
			out = append(out, e)
		}
	}
	return out
}

// runOn runs one run on r (Chat and Sink set to rec) and waits for its end.
func runOn(t *testing.T, r *Runner, rec *recorder, q moltgate.QueuedRun) {
	t.Helper()
	r.Chat, r.Sink = rec, rec
	if q.SessionKey == "" {
		q.SessionKey = "s"
	}
	if q.RunID == "" {
		q.RunID = "run1"
	}
	if err := r.Enqueue(q); err != nil {
		t.Fatal(err)
	}
	waitDone(t, rec)
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func waitDone(t *testing.T, rec *recorder) {
	t.Helper()
	select {
	case <-rec.done:
	case <-time.After(20 * time.Second):
		t.Fatal("run did not end")
	}
}

// newRunner returns a runner over fixed choices.
func newRunner(choices ...Choice) *Runner {
	r := NewRunner(nil, nil, func() Resolution { return Resolution{Choices: choices} })
	r.DeltaInterval = 0
	r.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return r
}

// fakeBrowser is a moltgate.Browser that remembers what its tabs did.
type fakeBrowser struct {
	mu       sync.Mutex
	opened   int
	closed   int
	actions  []string
	blocking chan struct{} // non-nil: Navigate closes it and waits for the run to stop
	shot     []byte
}

func (b *fakeBrowser) OpenTab(context.Context) (moltgate.BrowserTab, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opened++
	return &fakeTab{b: b}, nil
}

func (b *fakeBrowser) did(action string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.actions = append(b.actions, action)
}

func (b *fakeBrowser) state() (opened, closed int, actions []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opened, b.closed, append([]string(nil), b.actions...)
}

type fakeTab struct{ b *fakeBrowser }

func (t *fakeTab) Navigate(ctx context.Context, url string) error {
	t.b.did("navigate " + url)
	if t.b.blocking != nil {
		close(t.b.blocking)
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}
func (t *fakeTab) Screenshot(context.Context) ([]byte, error) {
	t.b.did("screenshot")
	if t.b.shot != nil {
		return t.b.shot, nil
	}
	return testPNG(320, 200, 0), nil
}
func (t *fakeTab) Text(context.Context) (string, error) {
	t.b.did("text")
	return "A page about cats.", nil
}
func (t *fakeTab) Click(_ context.Context, sel string) error { t.b.did("click " + sel); return nil }
func (t *fakeTab) Type(_ context.Context, sel, text string) error {
	t.b.did("type " + sel + " " + text)
	return nil
}
func (t *fakeTab) Close() error {
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	t.b.closed++
	return nil
}

// testPNG draws a w×h PNG: a smooth gradient, with noise (which
// compresses badly) in the first noiseRows rows.
func testPNG(w, h, noiseRows int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	seed := uint32(1)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.RGBA{uint8(x), uint8(y), 128, 255}
			if y < noiseRows {
				seed = seed*1664525 + 1013904223
				c = color.RGBA{uint8(seed >> 24), uint8(seed >> 16), uint8(seed >> 8), 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// dig walks decoded JSON: string keys index objects, ints index arrays.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k < 0 {
				k += len(l)
			}
			if k < 0 || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// toolNames lists the tools a provider request offered, in either wire format.
func toolNames(body map[string]any) []string {
	var names []string
	tools, _ := body["tools"].([]any)
	for _, t := range tools {
		if n, ok := dig(t, "name").(string); ok {
			names = append(names, n)
		} else if n, ok := dig(t, "function", "name").(string); ok {
			names = append(names, n)
		}
	}
	return names
}

// providerFake is one of the fake provider APIs and a provider for it.
type providerFake struct {
	name   string
	server func(testing.TB) *fakellm.Server
	make   func(url string) Provider
}

var providerFakes = []providerFake{
	{"Anthropic", fakellm.NewAnthropic, func(url string) Provider { return NewAnthropic("sk-ant-test", url, nil, nil) }},
	{"OpenAI", fakellm.NewOpenAI, func(url string) Provider { return NewOpenAI("sk-test", url, nil, nil) }},
}

// systemOf returns the system prompt a request carried.
func systemOf(body map[string]any) string {
	if s, ok := dig(body, "system", 0, "text").(string); ok {
		return s
	}
	if dig(body, "messages", 0, "role") == "system" {
		if s, ok := dig(body, "messages", 0, "content").(string); ok {
			return s
		}
	}
	return ""
}
