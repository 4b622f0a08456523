package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/api"
	"github.com/moltgate/moltgate/browser"
)

const browserUsage = `Usage:
  moltgate browser screenshot URL OUT.png [--width 1280 --height 800 --full-page --wait 2s]
  moltgate browser video URL1,URL2,… OUT.mp4|OUT.webm [--fps 10 --scroll --per-page 3s --width 1280 --height 720 --wait 0s]

An .mp4 is encoded by ffmpeg; a .webm by Chromium alone. Flags may come
before or after the arguments.

Environment: CHROMIUM_PATH (default: chromium, chromium-browser or
google-chrome on PATH), BROWSER_CDP_URL (use a running browser instead:
http://host:9222 or ws://host:9222/devtools/browser/<id>).
`

// runBrowser captures pages with the same browser code the gateway uses.
func runBrowser(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, browserUsage)
		return fmt.Errorf("browser needs a subcommand: screenshot or video")
	}
	switch args[0] {
	case "screenshot":
		return runScreenshot(ctx, env, args[1:], stdout, stderr)
	case "video":
		return runVideo(ctx, env, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, browserUsage)
		return nil
	default:
		fmt.Fprint(stderr, browserUsage)
		return fmt.Errorf("unknown browser command %q", args[0])
	}
}

// newBrowserManager configures the browser from the environment:
// CHROMIUM_PATH and BROWSER_CDP_URL.
func newBrowserManager(env Env, logger *slog.Logger) *browser.Manager {
	m := browser.NewManager()
	m.ExecPath = env.get("CHROMIUM_PATH", "")
	m.RemoteURL = env.get("BROWSER_CDP_URL", "")
	m.Logger = logger
	return m
}

// openCLIBrowser opens a Manager for one command; the returned func closes
// it, even after ctx was canceled by Ctrl-C.
func openCLIBrowser(env Env, stderr io.Writer) (*browser.Manager, func(), error) {
	m := newBrowserManager(env, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	m.IdleTimeout = -1 // the command closes it
	if err := m.Open(); err != nil {
		return nil, nil, err
	}
	return m, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	}, nil
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments, which it returns.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func runScreenshot(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("browser screenshot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	width := fs.Int("width", browser.DefaultWidth, "viewport width in CSS pixels")
	height := fs.Int("height", browser.DefaultHeight, "viewport height in CSS pixels")
	fullPage := fs.Bool("full-page", false, "capture the whole page, not only the viewport")
	wait := fs.Duration("wait", 0, "let the page settle this long after it loads")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("usage: moltgate browser screenshot URL OUT.png [flags]")
	}
	url, out := pos[0], pos[1]
	if !strings.EqualFold(filepath.Ext(out), ".png") {
		return fmt.Errorf("cannot write %q: screenshots are PNG, name it .png", out)
	}
	m, closeBrowser, err := openCLIBrowser(env, stderr)
	if err != nil {
		return err
	}
	defer closeBrowser()
	prog := newProgress(stderr, "screenshot")
	prog.stage("loading " + url)
	png, err := browser.Screenshot(ctx, m, url, browser.ScreenshotOptions{Width: *width, Height: *height, FullPage: *fullPage, Wait: *wait})
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		return fmt.Errorf("cannot write the screenshot: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s (%s)\n", out, humanBytes(len(png)))
	return nil
}

func runVideo(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("browser video", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fps := fs.Int("fps", browser.DefaultFPS, "frames per second")
	scroll := fs.Bool("scroll", false, "scroll each page from top to bottom")
	perPage := fs.Duration("per-page", browser.DefaultPerPage, "how long to record each page")
	width := fs.Int("width", browser.DefaultVideoWidth, "video width")
	height := fs.Int("height", browser.DefaultVideoHeight, "video height")
	wait := fs.Duration("wait", 0, "let each page settle this long after it loads")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("usage: moltgate browser video URL1,URL2,… OUT.mp4|OUT.webm [flags]")
	}
	var urls []string
	for _, u := range strings.Split(pos[0], ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	out := pos[1]
	opts := browser.VideoOptions{Width: *width, Height: *height, FPS: *fps, PerPage: *perPage, Scroll: *scroll, Wait: *wait}
	m, closeBrowser, err := openCLIBrowser(env, stderr)
	if err != nil {
		return err
	}
	defer closeBrowser()
	prog := newProgress(stderr, "video")
	start := time.Now()
	if err := browser.Video(ctx, m, urls, opts, out, func(done, total int) { prog.report(int64(done), int64(total)) }); err != nil {
		return err
	}
	size := "?"
	if st, err := os.Stat(out); err == nil {
		size = humanBytes(int(st.Size()))
	}
	frames := opts.FramesPerPage() * len(urls)
	fmt.Fprintf(stdout, "wrote %s (%d frames at %d fps from %d pages, %s, in %s)\n",
		out, frames, *fps, len(urls), size, time.Since(start).Round(100*time.Millisecond))
	return nil
}

func humanBytes(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// mountBrowser opens the shared browser (Chromium starts on first use) and
// serves its CDP endpoints at /cdp behind CDP_SECRET, recording every CDP
// session as events.
func (g *gateway) mountBrowser(trust *api.Trust) error {
	g.browser = newBrowserManager(g.env, g.logger)
	if err := g.browser.Open(); err != nil {
		return err
	}
	g.cdpSessions = newSessionRecorder(g.logger, func(ev browser.SessionEvent) {
		typ := moltgate.EventBrowserSessionOpened
		d := moltgate.BrowserSessionData{SessionID: ev.ID, TargetType: ev.TargetType, TargetID: ev.TargetID, RemoteIP: ev.RemoteAddr}
		if ev.State == browser.SessionClosed {
			typ = moltgate.EventBrowserSessionClosed
			d.DurationMs, d.FramesIn, d.BytesIn, d.FramesOut, d.BytesOut = ev.Duration.Milliseconds(), ev.FramesIn, ev.BytesIn, ev.FramesOut, ev.BytesOut
			d.CloseCode, d.ClosedBy = ev.CloseCode, ev.ClosedBy
		}
		if err := g.service.RecordBrowserSession(context.Background(), typ, d); err != nil {
			g.logger.Error("cannot record a CDP session", "error", err)
		}
	})
	h, err := browser.NewCDPHandler(g.browser, browser.CDPConfig{
		Secret: g.env.get("CDP_SECRET", ""), PublicURL: g.env.get("WORKER_URL", ""),
		TrustedRequest: trust.ViaTrustedProxy, ClientIP: trust.ClientIP,
		OnSession: g.cdpSessions.add,
	})
	if err != nil {
		return err
	}
	g.server.Handle("", "/cdp", h, g.gw.LimitFailures) // a weak CDP_SECRET is guessed no faster than the token
	g.server.Handle("", "/cdp/*path", h, g.gw.LimitFailures)
	return nil
}

// sessionRecorder records the CDP sessions' events on one goroutine, in the
// order the sessions report them: OnSession runs on the session's goroutine
// and must not wait for the log, and a goroutine per event could record a
// close before its open, or still be appending when the log closes.
type sessionRecorder struct {
	logger *slog.Logger
	record func(browser.SessionEvent)
	queue  chan browser.SessionEvent
	done   chan struct{} // closed once the queue is closed and drained

	mu      sync.Mutex
	open    int           // sessions that reported their open and not yet their close
	idle    chan struct{} // told when open falls to zero
	stopped bool          // the queue is closed
}

func newSessionRecorder(logger *slog.Logger, record func(browser.SessionEvent)) *sessionRecorder {
	r := &sessionRecorder{logger: logger, record: record, queue: make(chan browser.SessionEvent, 64),
		done: make(chan struct{}), idle: make(chan struct{}, 1)}
	go func() {
		defer close(r.done)
		for ev := range r.queue {
			r.record(ev)
		}
	}()
	return r
}

// add queues ev; it waits only while the queue is full, that is while the
// log is far behind the sessions.
func (r *sessionRecorder) add(ev browser.SessionEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		r.logger.Warn("a CDP session event came after shutdown and is not recorded", "session", ev.ID, "state", ev.State)
		return
	}
	if ev.State == browser.SessionClosed {
		if r.open--; r.open == 0 {
			select {
			case r.idle <- struct{}{}:
			default:
			}
		}
	} else {
		r.open++
	}
	r.queue <- ev
}

// close waits for the open sessions to report their close (closing the
// browser ends them), then for every event to be recorded, or until ctx
// ends. Like the gateway's other parts, it may be closed twice.
func (r *sessionRecorder) close(ctx context.Context) error {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return nil
	}
	for r.open > 0 && ctx.Err() == nil {
		r.mu.Unlock()
		select {
		case <-r.idle:
		case <-ctx.Done():
		}
		r.mu.Lock()
	}
	unclosed := r.open
	r.stopped = true
	close(r.queue)
	r.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		return fmt.Errorf("cannot record the last CDP sessions: %w", ctx.Err())
	}
	if unclosed > 0 {
		return fmt.Errorf("%d CDP sessions did not report their close before the shutdown's deadline", unclosed)
	}
	return nil
}
