// Package browser gives moltgate a headless Chromium: one browser shared by
// every user, launched on demand and closed when idle (Manager); the Chrome
// DevTools Protocol endpoints that Moltworker's users script against, behind
// a secret (NewCDPHandler); tabs for the assistant's browser tool (Tab); and
// screenshot and video capture (Screenshot, Video).
//
// It imports only the root package, chromedp/cdproto, coder/websocket and the
// standard library: it reaches the rest of moltgate through the callbacks of
// its configuration, which cmd/moltgate wires.
package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// Defaults of the Manager's configuration.
const (
	DefaultIdleTimeout   = 5 * time.Minute
	DefaultStartTimeout  = 60 * time.Second
	DefaultActionTimeout = 15 * time.Second
	DefaultMaxTextBytes  = 64 << 10
	DefaultWidth         = 1280
	DefaultHeight        = 800
)

// ExecNames are the names looked up on PATH when Manager.ExecPath is empty,
// in order: Debian's package, the name other distributions use, Google's.
var ExecNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Manager runs the one Chromium that all of moltgate's users share. It
// launches the browser on the first use, launches a fresh one when the last
// died, and closes it after IdleTimeout without use, so an idle gateway costs
// no memory. With RemoteURL it attaches to a browser that runs elsewhere
// instead.
//
// Set the exported fields, then call Open; Close stops the browser.
type Manager struct {
	// ExecPath is the Chromium binary. Empty looks up ExecNames on PATH.
	ExecPath string
	// RemoteURL attaches to a running browser instead of launching one
	// (BROWSER_CDP_URL): an http(s)://host:port DevTools endpoint, or a
	// ws(s)://host:port/devtools/browser/<id> URL. Its query string (a
	// hosted browser's token) is kept on every request to it.
	RemoteURL string
	// Flags are extra command-line switches for a launched browser.
	Flags []string
	// IdleTimeout closes a launched browser that had no session, no tab and
	// no request for this long. Zero means DefaultIdleTimeout; negative
	// keeps the browser until Close.
	IdleTimeout time.Duration
	// StartTimeout bounds a launch. Zero means DefaultStartTimeout.
	StartTimeout time.Duration
	// ActionTimeout bounds each tab action whose context has no earlier
	// deadline. Zero means DefaultActionTimeout.
	ActionTimeout time.Duration
	// MaxTextBytes caps what Tab.Text returns. Zero means DefaultMaxTextBytes.
	MaxTextBytes int
	// Width and Height are the viewport of a new tab, in CSS pixels. Zero
	// means DefaultWidth and DefaultHeight.
	Width, Height int
	// Logger receives launches, exits and idle closes. Nil means slog.Default().
	Logger *slog.Logger

	ctx    context.Context // canceled by Close: ends tabs and CDP sessions
	cancel context.CancelFunc
	wg     sync.WaitGroup
	remote *url.URL
	lookup error         // why no binary was found; reported on use
	launch chan struct{} // a semaphore: one launch at a time, waitable with a context

	mu        sync.Mutex
	open      bool
	closed    bool
	inst      *instance
	users     int // leases held: CDP sessions, tabs, requests in flight
	lastUse   time.Time
	idleTimer *time.Timer
	launches  int
}

// NewManager returns a Manager with the default configuration.
func NewManager() *Manager { return &Manager{} }

// Open checks the configuration. It does not launch the browser: that
// happens on first use. A missing Chromium binary is not an error here, so a
// gateway without a browser still starts; every use then reports how to
// install one.
func (m *Manager) Open() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.open {
		return fmt.Errorf("cannot open browser manager: already open")
	}
	if m.IdleTimeout == 0 {
		m.IdleTimeout = DefaultIdleTimeout
	}
	if m.StartTimeout <= 0 {
		m.StartTimeout = DefaultStartTimeout
	}
	if m.ActionTimeout <= 0 {
		m.ActionTimeout = DefaultActionTimeout
	}
	if m.MaxTextBytes <= 0 {
		m.MaxTextBytes = DefaultMaxTextBytes
	}
	if m.Width <= 0 {
		m.Width = DefaultWidth
	}
	if m.Height <= 0 {
		m.Height = DefaultHeight
	}
	if err := checkViewport(m.Width, m.Height); err != nil {
		return fmt.Errorf("cannot open browser manager: %w", err)
	}
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	if m.RemoteURL != "" {
		u, err := parseRemoteURL(m.RemoteURL)
		if err != nil {
			return err
		}
		m.remote = u
	} else if m.ExecPath, m.lookup = findExec(m.ExecPath); m.lookup != nil {
		m.Logger.Warn("no Chromium found: the browser tool, captures and /cdp stay unavailable", "err", m.lookup)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.launch = make(chan struct{}, 1)
	m.open = true
	return nil
}

// Close stops the browser (a launched one; a remote browser keeps running),
// ends every CDP session and tab, and removes the browser's profile. ctx
// bounds the wait for the browser to exit.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if !m.open || m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	inst := m.inst
	m.inst = nil
	if m.idleTimer != nil {
		m.idleTimer.Stop()
	}
	m.mu.Unlock()

	m.cancel()
	// Wait out a launch in flight: it sees closed and stops its browser,
	// and no launch starts after this, so wg.Wait below sees every goroutine.
	select {
	case m.launch <- struct{}{}:
		<-m.launch
	case <-ctx.Done():
		return fmt.Errorf("cannot close browser manager: %w", ctx.Err())
	}
	var err error
	if inst != nil {
		err = inst.stop(ctx)
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("cannot close browser manager: %w", ctx.Err())
	}
	return err
}

// Status is what the Manager is doing, for health and debug pages.
type Status struct {
	Remote      bool   `json:"remote"`        // attached to RemoteURL
	Running     bool   `json:"running"`       // a browser is up (always true when remote)
	PID         int    `json:"pid,omitempty"` // the launched browser's process
	ExecPath    string `json:"execPath,omitempty"`
	UserDataDir string `json:"userDataDir,omitempty"`
	Users       int    `json:"users"`           // sessions, tabs and requests holding the browser
	Launches    int    `json:"launches"`        // browsers launched since Open
	Error       string `json:"error,omitempty"` // why the browser cannot start
}

// Status reports the Manager's state.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Status{Remote: m.remote != nil, Users: m.users, Launches: m.launches, ExecPath: m.ExecPath}
	if m.lookup != nil {
		s.Error = m.lookup.Error()
	}
	if s.Remote {
		s.Running, s.ExecPath = true, ""
	} else if m.inst != nil && m.inst.alive() {
		s.Running, s.PID, s.UserDataDir = true, m.inst.pid, m.inst.dir
	}
	return s
}

// lease is one user's hold on the browser; the browser is not closed for
// idleness while a lease is held.
type lease struct {
	m    *Manager
	inst *instance
	once sync.Once
}

func (l *lease) release() { l.once.Do(l.m.release) }

// acquire returns the running browser, launching one when none runs or the
// last one died, and counts the caller as a user until it releases.
func (m *Manager) acquire(ctx context.Context) (*lease, error) {
	m.mu.Lock()
	switch {
	case !m.open:
		m.mu.Unlock()
		return nil, moltgate.Errorf(moltgate.EUNAVAILABLE, "the browser is not set up")
	case m.closed:
		m.mu.Unlock()
		return nil, moltgate.Errorf(moltgate.EUNAVAILABLE, "the browser is shutting down")
	case m.lookup != nil:
		m.mu.Unlock()
		return nil, moltgate.Errorf(moltgate.EUNAVAILABLE, "%s", m.lookup.Error())
	}
	m.mu.Unlock()

	if m.remote != nil {
		inst, err := m.resolveRemote(ctx)
		if err != nil {
			return nil, err
		}
		return m.hold(inst), nil
	}
	select {
	case m.launch <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-m.launch }()

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, moltgate.Errorf(moltgate.EUNAVAILABLE, "the browser is shutting down")
	}
	inst := m.inst
	if inst != nil && inst.alive() {
		l := m.holdLocked(inst)
		m.mu.Unlock()
		return l, nil
	}
	m.inst = nil
	m.mu.Unlock()
	// A dead browser's exit watcher logged its end and removed its profile.
	inst, err := m.start(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.closed { // Close ran during the launch
		m.mu.Unlock()
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = inst.stop(stopCtx)
		return nil, moltgate.Errorf(moltgate.EUNAVAILABLE, "the browser is shutting down")
	}
	m.inst = inst
	m.launches++
	l := m.holdLocked(inst)
	m.mu.Unlock()
	return l, nil
}

func (m *Manager) hold(inst *instance) *lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.holdLocked(inst)
}

func (m *Manager) holdLocked(inst *instance) *lease {
	m.users++
	m.lastUse = time.Now()
	if m.idleTimer != nil {
		m.idleTimer.Stop()
		m.idleTimer = nil
	}
	return &lease{m: m, inst: inst}
}

func (m *Manager) release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users--
	m.lastUse = time.Now()
	if m.users > 0 || m.closed || m.inst == nil || m.IdleTimeout < 0 {
		return
	}
	inst := m.inst
	m.idleTimer = time.AfterFunc(m.IdleTimeout, func() { m.closeIdle(inst) })
}

// closeIdle stops inst when it is still the current browser and nobody used
// it since the timer was set.
func (m *Manager) closeIdle(inst *instance) {
	m.mu.Lock()
	if m.inst != inst || m.users > 0 || m.closed || time.Since(m.lastUse) < m.IdleTimeout {
		m.mu.Unlock()
		return
	}
	m.inst = nil
	m.idleTimer = nil
	m.mu.Unlock()
	m.Logger.Info("closing the idle browser", "pid", inst.pid, "idle", m.IdleTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := inst.stop(ctx); err != nil {
		m.Logger.Warn("cannot stop the idle browser", "pid", inst.pid, "err", err)
	}
}

// instance is one browser: a process this Manager launched, or a remote one.
type instance struct {
	wsURL    string // the browser's DevTools WebSocket, ws://host:port/devtools/browser/<id>
	httpBase string // its DevTools HTTP server, http://host:port
	query    string // a remote browser's query string, kept on every request
	remote   bool

	// Launched browsers only.
	pid     int
	dir     string // the fresh user-data-dir, removed at exit
	stderr  *tailBuffer
	exited  chan struct{} // closed when the process exited and was cleaned up
	exitErr error         // set before exited is closed
	stopped atomic.Bool   // we asked it to stop: its exit is not a crash
}

func (i *instance) alive() bool {
	if i.remote {
		return true
	}
	select {
	case <-i.exited:
		return false
	default:
		return true
	}
}

// devtoolsURL is the WebSocket URL of a DevTools path ("/devtools/page/<id>").
func (i *instance) devtoolsURL(p string) string {
	u := "ws" + strings.TrimPrefix(i.httpBase, "http") + p
	if i.query != "" {
		u += "?" + i.query
	}
	return u
}

// httpURL is the URL of a DevTools HTTP path ("/json/list").
func (i *instance) httpURL(p, rawQuery string) string {
	u := i.httpBase + p
	switch {
	case rawQuery != "" && i.query != "":
		u += "?" + rawQuery + "&" + i.query
	case rawQuery != "":
		u += "?" + rawQuery
	case i.query != "":
		u += "?" + i.query
	}
	return u
}

// launchFlags are the switches of every launched browser. The background
// networking switches matter: without them Chromium phones home at start,
// which is slow or refused on closed networks. --disable-dev-shm-usage keeps
// it alive in containers with a small /dev/shm.
var launchFlags = []string{
	"--headless",
	"--no-sandbox",
	"--disable-gpu",
	"--disable-background-networking",
	"--disable-component-update",
	"--no-first-run",
	"--no-default-browser-check",
	"--disable-sync",
	"--disable-quic",
	"--disable-dev-shm-usage",
	"--disable-extensions",
	"--disable-default-apps",
	"--disable-breakpad",
	"--disable-crash-reporter",
	"--disable-client-side-phishing-detection",
	"--disable-features=Translate,MediaRouter,OptimizationHints",
	"--disable-background-timer-throttling",
	"--disable-backgrounding-occluded-windows",
	"--disable-renderer-backgrounding",
	"--disable-hang-monitor",
	"--disable-popup-blocking",
	"--disable-prompt-on-repost",
	"--metrics-recording-only",
	"--safebrowsing-disable-auto-update",
	"--password-store=basic",
	"--use-mock-keychain",
	"--force-color-profile=srgb",
	"--hide-scrollbars",
	"--mute-audio",
	"--remote-debugging-address=127.0.0.1",
	"--remote-debugging-port=0",
}

// start launches a browser with a fresh profile and waits until its DevTools
// server listens.
func (m *Manager) start(ctx context.Context) (*instance, error) {
	dir, err := os.MkdirTemp("", "moltgate-chromium-")
	if err != nil {
		return nil, fmt.Errorf("cannot create the browser profile: %w", err)
	}
	args := append(append(append([]string{}, launchFlags...), m.Flags...),
		"--user-data-dir="+dir,
		fmt.Sprintf("--window-size=%d,%d", m.Width, m.Height),
		"about:blank")
	cmd := exec.Command(m.ExecPath, args...)
	cmd.SysProcAttr = sysProcAttr()
	pr, pw, err := os.Pipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("cannot launch the browser: %w", err)
	}
	cmd.Stderr = pw
	inst := &instance{dir: dir, stderr: newTailBuffer(40), exited: make(chan struct{})}
	listening := make(chan string, 1)

	started := make(chan error, 1)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		// Pdeathsig fires when the thread that started the child exits,
		// not the process, so this goroutine keeps its thread until the
		// browser is gone: a crashed gateway takes its browser with it.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		// Kill what the browser left behind (renderers, zygotes): they are
		// in its process group.
		killGroup(cmd.Process.Pid)
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			m.Logger.Warn("cannot remove the browser profile", "dir", dir, "err", rmErr)
		}
		inst.exitErr = err
		if !inst.stopped.Load() {
			m.Logger.Warn("the browser exited", "pid", cmd.Process.Pid, "err", err, "stderr", inst.stderr.tail())
		}
		close(inst.exited)
	}()
	err = <-started
	pw.Close() // the browser holds its own copy
	if err != nil {
		pr.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("cannot launch the browser %s: %w", m.ExecPath, err)
	}
	inst.pid = cmd.Process.Pid
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		inst.stderr.scan(pr, m.Logger, listening)
	}()

	wsURL, err := m.waitListening(ctx, inst, listening)
	host := ""
	if err == nil {
		host, err = devtoolsHost(wsURL)
	}
	if err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = inst.stop(stopCtx)
		return nil, err
	}
	inst.wsURL = wsURL
	inst.httpBase = "http://" + host
	m.Logger.Info("launched the browser", "pid", inst.pid, "exec", m.ExecPath, "devtools", host)
	return inst, nil
}

// devtoolsHost is the host:port of the DevTools address a browser printed.
func devtoolsHost(wsURL string) (string, error) {
	u, err := url.Parse(wsURL)
	if err == nil && u.Host == "" {
		err = errors.New("no host")
	}
	if err != nil {
		return "", fmt.Errorf("cannot read the browser's DevTools address %q: %w", wsURL, err)
	}
	return u.Host, nil
}

// waitListening waits for the browser's DevTools address: the line it
// prints on stderr, or the DevToolsActivePort file it writes in its profile,
// whichever comes first.
func (m *Manager) waitListening(ctx context.Context, inst *instance, listening <-chan string) (string, error) {
	timeout := time.NewTimer(m.StartTimeout)
	defer timeout.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case u := <-listening:
			return u, nil
		case <-poll.C:
			if u, ok := readActivePort(inst.dir); ok {
				return u, nil
			}
		case <-inst.exited:
			return "", moltgate.Errorf(moltgate.EUNAVAILABLE, "the browser exited at start (%v): %s", inst.exitErr, inst.stderr.tail())
		case <-timeout.C:
			return "", moltgate.Errorf(moltgate.ETIMEOUT, "the browser did not start within %s: %s", m.StartTimeout, inst.stderr.tail())
		case <-ctx.Done():
			return "", ctx.Err()
		case <-m.ctx.Done():
			return "", moltgate.Errorf(moltgate.EUNAVAILABLE, "the browser is shutting down")
		}
	}
}

// readActivePort reads DevToolsActivePort: the port on the first line, the
// browser's WebSocket path on the second.
func readActivePort(dir string) (string, bool) {
	b, err := os.ReadFile(dir + "/DevToolsActivePort")
	if err != nil {
		return "", false
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "/devtools/browser/") {
		return "", false // still being written
	}
	return "ws://127.0.0.1:" + strings.TrimSpace(lines[0]) + strings.TrimSpace(lines[1]), true
}

// stop ends a launched browser: SIGTERM first, so that the browser reaps its
// own helper processes (a container's PID 1 may not), then SIGKILL to the
// whole process group. It returns when the profile is removed.
func (i *instance) stop(ctx context.Context) error {
	if i.remote {
		return nil
	}
	i.stopped.Store(true)
	terminate(i.pid)
	grace := time.NewTimer(5 * time.Second)
	defer grace.Stop()
	select {
	case <-i.exited:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	killGroup(i.pid)
	select {
	case <-i.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cannot stop the browser (pid %d): %w", i.pid, ctx.Err())
	}
}

// findExec resolves the Chromium binary.
func findExec(p string) (string, error) {
	if p != "" {
		found, err := exec.LookPath(p)
		if err != nil {
			return p, fmt.Errorf("cannot run the browser %q (CHROMIUM_PATH): %w", p, err)
		}
		return found, nil
	}
	for _, name := range ExecNames {
		if found, err := exec.LookPath(name); err == nil {
			return found, nil
		}
	}
	return "", fmt.Errorf("no Chromium found on PATH (looked for %s): install it (Debian: apt-get install chromium), set CHROMIUM_PATH, or set BROWSER_CDP_URL to a running browser", strings.Join(ExecNames, ", "))
}

// parseRemoteURL checks BROWSER_CDP_URL.
func parseRemoteURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("cannot use BROWSER_CDP_URL: %w", err)
	}
	switch u.Scheme {
	case "http", "https", "ws", "wss":
	default:
		return nil, fmt.Errorf("cannot use BROWSER_CDP_URL %q: want http(s)://host:port or ws(s)://host:port/devtools/browser/<id>", redactURL(u))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("cannot use BROWSER_CDP_URL %q: no host", redactURL(u))
	}
	if (u.Scheme == "ws" || u.Scheme == "wss") && !strings.HasPrefix(u.Path, "/devtools/browser/") {
		return nil, fmt.Errorf("cannot use BROWSER_CDP_URL %q: a WebSocket URL must be the browser's, /devtools/browser/<id>", redactURL(u))
	}
	return u, nil
}

// resolveRemote finds the remote browser's current WebSocket. It asks the
// DevTools HTTP server each time, because a remote browser that restarted has
// a new browser id.
func (m *Manager) resolveRemote(ctx context.Context) (*instance, error) {
	u := m.remote
	host, err := hostAsIP(ctx, u.Host)
	if err != nil {
		return nil, moltgate.Errorf(moltgate.EUNAVAILABLE, "cannot reach the remote browser %s: %v", redactURL(u), err)
	}
	inst := &instance{remote: true, query: u.RawQuery}
	secure := u.Scheme == "https" || u.Scheme == "wss"
	inst.httpBase = map[bool]string{false: "http://", true: "https://"}[secure] + host
	if u.Scheme == "ws" || u.Scheme == "wss" {
		inst.wsURL = u.Scheme + "://" + host + u.Path
		if u.RawQuery != "" {
			inst.wsURL += "?" + u.RawQuery
		}
		return inst, nil
	}
	var v struct {
		WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
	}
	if err := getJSON(ctx, inst.httpURL("/json/version", ""), &v); err != nil {
		return nil, moltgate.Errorf(moltgate.EUNAVAILABLE, "cannot reach the remote browser %s: %v", redactURL(u), err)
	}
	ws, err := url.Parse(v.WebSocketDebuggerURL)
	if err != nil || !strings.HasPrefix(ws.Path, "/devtools/browser/") {
		return nil, moltgate.Errorf(moltgate.EUNAVAILABLE, "the remote browser %s sent no browser WebSocket URL", redactURL(u))
	}
	// The browser names itself as it sees itself (localhost, 0.0.0.0);
	// only its path is ours to use.
	inst.wsURL = inst.devtoolsURL(ws.Path)
	return inst, nil
}

// hostAsIP resolves a host name to an address: Chrome's DevTools server
// refuses a Host header that is neither an IP address nor localhost.
func hostAsIP(ctx context.Context, hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	if host == "localhost" || net.ParseIP(host) != nil {
		return hostport, nil
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(addrs[0].IP.String(), port), nil
}

// devtoolsClient talks to the browser's DevTools HTTP server, which answers
// at once or not at all.
var devtoolsClient = &http.Client{Timeout: 15 * time.Second}

func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := devtoolsClient.Do(req)
	if err != nil {
		return errors.New(redactError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDevtoolsBody))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, v)
}

// maxDevtoolsBody caps what the browser's HTTP server may send us: target
// lists are a few KB per tab.
const maxDevtoolsBody = 8 << 20

// redactURL prints a URL without its query and user info, where hosted
// browsers carry their tokens.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		c.RawQuery = "REDACTED"
	}
	return c.String()
}

// redactError removes the URL (and its query) from a *url.Error's text.
func redactError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			return fmt.Sprintf("%s %s: %v", ue.Op, redactURL(u), ue.Err)
		}
		return ue.Err.Error()
	}
	return err.Error()
}

// tailBuffer keeps the last lines the browser wrote on stderr, for the error
// of a failed launch and the log of a crash.
type tailBuffer struct {
	mu    sync.Mutex
	lines []string
	max   int
}

func newTailBuffer(n int) *tailBuffer { return &tailBuffer{max: n} }

// scan reads the browser's stderr to the end (a pipe that is not drained
// blocks the browser), keeps the tail, and sends the DevTools address when
// the browser prints it.
func (t *tailBuffer) scan(r io.ReadCloser, log *slog.Logger, listening chan<- string) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 16<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "DevTools listening on "); ok {
			select {
			case listening <- strings.TrimSpace(rest):
			default:
			}
		}
		t.add(line)
		log.Debug("chromium", "line", line)
	}
	_, _ = io.Copy(io.Discard, r) // after a line too long to scan, keep draining
}

func (t *tailBuffer) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

// tail returns the kept lines, the most useful part of a browser's last words.
func (t *tailBuffer) tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var keep []string
	for _, l := range t.lines {
		// D-Bus complaints are noise in every container.
		if !strings.Contains(l, "dbus") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 8 {
		keep = keep[len(keep)-8:]
	}
	return strings.Join(keep, "\n")
}

// pathID checks an id taken from a URL path before it goes into the browser's
// URL: target ids are hex, browser ids UUIDs.
func pathID(id string) bool {
	if id == "" || len(id) > 128 || path.Clean(id) != id {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return id != "." && id != ".."
}
