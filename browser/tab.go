package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
	moltgate "github.com/moltgate/moltgate"
)

// Limits of the tab API's inputs.
const (
	MaxViewport      = 8192  // CSS pixels, either side
	MaxFullPage      = 16384 // CSS pixels of a full-page screenshot's height: Chromium's texture limit
	MaxTypedRunes    = 10000
	MaxSelectorBytes = 1024
	navigateTimeout  = 45 * time.Second
)

// Tab is one browser tab for the assistant's browser tool. Each tab has a
// browser context of its own (cookies, storage), so nothing leaks between
// tabs or to the CDP users. A tab holds the browser open until Close. Its
// methods may be called from several goroutines; they run one at a time.
type Tab struct {
	m      *Manager
	lease  *lease
	ctx    context.Context // the chromedp context of the tab
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
}

// OpenTab opens a tab with the Manager's viewport, launching the browser if
// needed. ctx bounds the opening only; the tab lives until Close.
func (m *Manager) OpenTab(ctx context.Context) (*Tab, error) {
	l, err := m.acquire(ctx)
	if err != nil {
		return nil, err
	}
	actx, acancel := remote.NewAllocator(m.ctx, l.inst.wsURL, remote.NoModifyURL)
	tctx, tcancel := chromedp.NewContext(actx, chromedp.WithNewBrowserContext())
	t := &Tab{m: m, lease: l, ctx: tctx, cancel: func() { tcancel(); acancel() }}

	// chromedp binds the tab's life to the context of its first run, so
	// that run uses the tab's own context; ctx and StartTimeout only bound
	// the wait for it.
	errc := make(chan error, 1)
	go func() { errc <- chromedp.Do(tctx, chromedp.EmulateViewport(int64(m.Width), int64(m.Height))) }()
	timeout := time.NewTimer(m.StartTimeout)
	defer timeout.Stop()
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout.C:
		err = moltgate.Errorf(moltgate.ETIMEOUT, "the browser did not open a tab within %s", m.StartTimeout)
	}
	if err != nil {
		t.cancel()
		l.release()
		if moltgate.ErrorCode(err) == moltgate.EINTERNAL && ctx.Err() == nil {
			err = moltgate.Errorf(moltgate.EUNAVAILABLE, "cannot open a tab: %v", err)
		}
		return nil, err
	}
	return t, nil
}

// Close closes the tab and its browser context.
func (t *Tab) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	t.cancel()
	t.lease.release()
	return nil
}

// run runs an action on the tab, bounded by ctx and by timeout. what names
// the action in errors.
func run[T any](t *Tab, ctx context.Context, timeout time.Duration, what string, a chromedp.Action[T]) (T, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var zero T
	if t.closed {
		return zero, moltgate.Errorf(moltgate.EINVALID, "cannot %s: the tab is closed", what)
	}
	actx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	v, err := chromedp.Run(actx, a)
	switch {
	case err == nil:
		return v, nil
	case ctx.Err() != nil:
		return zero, ctx.Err()
	case !t.lease.inst.alive() || t.ctx.Err() != nil:
		return zero, moltgate.Errorf(moltgate.EUNAVAILABLE, "cannot %s: the browser closed; open a new tab", what)
	case errors.Is(err, context.DeadlineExceeded):
		return zero, moltgate.Errorf(moltgate.ETIMEOUT, "cannot %s: no answer within %s", what, timeout)
	}
	var le *chromedp.LoadError
	if errors.As(err, &le) {
		return zero, err // Navigate words it
	}
	return zero, fmt.Errorf("cannot %s: %w", what, err)
}

// Page describes the page a tab shows.
type Page struct {
	URL    string `json:"url"`
	Title  string `json:"title"`
	Status int    `json:"status,omitempty"` // the document's HTTP status
}

// Navigate loads u (http, https or about:blank) and waits for its load event.
// Other schemes are refused: file: would hand the gateway's own files (its
// keys) to whoever steers the assistant.
func (t *Tab) Navigate(ctx context.Context, u string) (Page, error) {
	shown, err := checkNavigable(u)
	if err != nil {
		return Page{}, err
	}
	resp, err := run(t, ctx, navigateTimeout, "load "+shown, chromedp.NavigateResponse(u))
	var le *chromedp.LoadError
	switch {
	case errors.As(err, &le):
		return Page{}, moltgate.Errorf(moltgate.EUNAVAILABLE, "cannot load %s: %s", shown, le.ErrorText)
	case moltgate.ErrorCode(err) == moltgate.ETIMEOUT:
		return Page{}, moltgate.Errorf(moltgate.ETIMEOUT, "cannot load %s: the page did not finish loading within %s", shown, navigateTimeout)
	case err != nil:
		return Page{}, err
	}
	p, err := t.Info(ctx)
	if resp != nil {
		p.Status = int(resp.Status)
	}
	return p, err
}

// Info returns the tab's current URL and title.
func (t *Tab) Info(ctx context.Context) (Page, error) {
	return run(t, ctx, t.m.ActionTimeout, "read the page", func(ctx context.Context, tg *chromedp.Target) (Page, error) {
		var p Page
		var err error
		if p.URL, err = chromedp.Location()(ctx, tg); err != nil {
			return p, err
		}
		p.Title, err = chromedp.Title()(ctx, tg)
		return p, err
	})
}

// checkNavigable refuses what Navigate does not open, and returns u as
// errors show it: without its password.
func checkNavigable(u string) (shown string, err error) {
	if u == "about:blank" {
		return u, nil
	}
	p, err := url.Parse(u)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL
		}
		return "", moltgate.Errorf(moltgate.EINVALID, "cannot open %q: %v", moltgate.RedactCredentials(u), err)
	}
	if (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return "", moltgate.Errorf(moltgate.EINVALID, "cannot open %q: only http:// and https:// URLs", p.Redacted())
	}
	return p.Redacted(), nil
}

// Text returns the readable text of the page (what a user could select),
// cut at MaxTextBytes with a note saying so.
func (t *Tab) Text(ctx context.Context) (string, error) {
	s, err := run(t, ctx, t.m.ActionTimeout, "read the page's text",
		chromedp.Evaluate[string](`(document.body || document.documentElement).innerText || ""`))
	if err != nil {
		return "", err
	}
	return truncateText(s, t.m.MaxTextBytes), nil
}

func truncateText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("\n[… truncated: the page has %d bytes of text, shown are the first %d]", len(s), cut)
}

// Click clicks the first visible element matching the CSS selector, waiting
// for one to appear until the action timeout.
func (t *Tab) Click(ctx context.Context, selector string) error {
	if err := t.checkSelector(ctx, selector); err != nil {
		return err
	}
	_, err := run(t, ctx, t.m.ActionTimeout, "click "+selector, chromedp.Click(chromedp.CSS(selector), chromedp.NodeVisible))
	return t.selectorError(err, selector)
}

// Type types text into the first visible element matching the CSS selector,
// key by key as a user would, after what the element already holds.
func (t *Tab) Type(ctx context.Context, selector, text string) error {
	if n := utf8.RuneCountInString(text); n > MaxTypedRunes {
		return moltgate.Errorf(moltgate.EINVALID, "cannot type %d characters: at most %d at once", n, MaxTypedRunes)
	}
	if err := t.checkSelector(ctx, selector); err != nil {
		return err
	}
	_, err := run(t, ctx, t.m.ActionTimeout, "type into "+selector, chromedp.SendKeys(chromedp.CSS(selector), text, chromedp.NodeVisible))
	return t.selectorError(err, selector)
}

// checkSelector rejects a selector the page cannot parse at once, instead
// of waiting the whole timeout for it to match.
func (t *Tab) checkSelector(ctx context.Context, selector string) error {
	if selector == "" || len(selector) > MaxSelectorBytes {
		return moltgate.Errorf(moltgate.EINVALID, "a CSS selector must have 1 to %d bytes", MaxSelectorBytes)
	}
	q, _ := json.Marshal(selector)
	msg, err := run(t, ctx, t.m.ActionTimeout, "check the selector "+selector,
		chromedp.Evaluate[string](fmt.Sprintf(`(() => { try { document.querySelector(%s); return "" } catch (e) { return String(e.message) } })()`, q)))
	if err != nil {
		return err
	}
	if msg != "" {
		return moltgate.Errorf(moltgate.EINVALID, "invalid CSS selector %q: %s", selector, msg)
	}
	return nil
}

func (t *Tab) selectorError(err error, selector string) error {
	if moltgate.ErrorCode(err) == moltgate.ETIMEOUT {
		return moltgate.Errorf(moltgate.ENOTFOUND, "no visible element matches %q within %s", selector, t.m.ActionTimeout)
	}
	return err
}

// SetViewport sets the tab's viewport in CSS pixels, at scale 1.
func (t *Tab) SetViewport(ctx context.Context, width, height int) error {
	if err := checkViewport(width, height); err != nil {
		return err
	}
	_, err := run(t, ctx, t.m.ActionTimeout, "set the viewport",
		func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := cdp.Call(ctx, tg, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
				Width: int64(width), Height: int64(height), DeviceScaleFactor: 1,
			})
			return chromedp.Void{}, err
		})
	return err
}

func checkViewport(width, height int) error {
	if width < 1 || width > MaxViewport || height < 1 || height > MaxViewport {
		return moltgate.Errorf(moltgate.EINVALID, "a viewport of %dx%d: each side must be 1 to %d pixels", width, height, MaxViewport)
	}
	return nil
}

// ScreenshotOptions shape a screenshot.
type ScreenshotOptions struct {
	// Width and Height set the viewport first, in CSS pixels; zero keeps it
	// (for Screenshot: the Manager's default).
	Width, Height int
	// FullPage captures the whole page, not only the viewport, up to
	// MaxFullPage pixels high.
	FullPage bool
	// Wait is how long to let the page settle (scripts, animations) before
	// the capture.
	Wait time.Duration
}

// Screenshot captures the tab as a PNG.
func (t *Tab) Screenshot(ctx context.Context, opts ScreenshotOptions) ([]byte, error) {
	if opts.Width != 0 || opts.Height != 0 {
		if err := t.SetViewport(ctx, opts.Width, opts.Height); err != nil {
			return nil, err
		}
	}
	if err := sleep(ctx, opts.Wait); err != nil {
		return nil, err
	}
	return run(t, ctx, t.m.ActionTimeout, "take a screenshot", func(ctx context.Context, tg *chromedp.Target) ([]byte, error) {
		params := page.CaptureScreenshotParams{Format: page.CaptureScreenshotFormatPng, FromSurface: new(true)}
		if opts.FullPage {
			m, err := cdp.Call(ctx, tg, page.GetLayoutMetrics, cdp.Empty{})
			if err != nil {
				return nil, err
			}
			if m.CSSContentSize == nil || m.CSSLayoutViewport == nil {
				return nil, fmt.Errorf("the browser sent no page size")
			}
			w := math.Max(m.CSSContentSize.Width, float64(m.CSSLayoutViewport.ClientWidth))
			h := math.Min(math.Max(m.CSSContentSize.Height, float64(m.CSSLayoutViewport.ClientHeight)), MaxFullPage)
			params.Clip = &page.Viewport{Width: math.Ceil(w), Height: math.Ceil(h), Scale: 1}
			params.CaptureBeyondViewport = new(true)
		}
		res, err := cdp.Call(ctx, tg, page.CaptureScreenshot, params)
		return res.Data, err
	})
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Screenshot loads url in a new tab and captures it as a PNG.
func Screenshot(ctx context.Context, m *Manager, u string, opts ScreenshotOptions) ([]byte, error) {
	if _, err := checkNavigable(u); err != nil {
		return nil, err
	}
	w, h := opts.Width, opts.Height
	if w == 0 && h == 0 {
		w, h = m.Width, m.Height
	}
	if err := checkViewport(w, h); err != nil {
		return nil, err
	}
	tab, err := m.OpenTab(ctx)
	if err != nil {
		return nil, err
	}
	defer tab.Close()
	// The viewport is set before the page loads, as the page lays itself
	// out for it.
	if err := tab.SetViewport(ctx, w, h); err != nil {
		return nil, err
	}
	if _, err := tab.Navigate(ctx, u); err != nil {
		return nil, err
	}
	return tab.Screenshot(ctx, ScreenshotOptions{FullPage: opts.FullPage, Wait: opts.Wait})
}
