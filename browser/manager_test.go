package browser

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	moltgate "github.com/moltgate/moltgate"
)

// groupProcesses lists the live (not zombie) processes of a process group.
func groupProcesses(tb testing.TB, pgid int) []int {
	tb.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var pids []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // it exited while we looked
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 3 || fields[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(fields[2]); g == pgid {
			pid, _ := strconv.Atoi(strings.Split(f, "/")[2])
			pids = append(pids, pid)
		}
	}
	return pids
}

// realBrowser checks that pid is Chromium's browser process itself, not a
// wrapper script or a helper (helpers have --type=).
func realBrowser(tb testing.TB, pid int) {
	tb.Helper()
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		tb.Fatalf("pid %d: %v", pid, err)
	}
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if !strings.Contains(filepath.Base(exe), "chrom") || strings.Contains(string(cmdline), "--type=") {
		tb.Fatalf("pid %d is %s %q, not the browser process", pid, exe, cmdline)
	}
}

func TestManager_LaunchAndClose(t *testing.T) {
	m := NewManager()
	m.ExecPath = chromiumPath
	m.Logger = testLogger(t)
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); st.Running || st.Launches != 0 {
		t.Fatalf("Open launched the browser: %+v", st)
	}
	ctx := testContext(t)
	tab, err := m.OpenTab(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := m.Status()
	if !st.Running || st.Launches != 1 || st.Users != 1 || st.PID == 0 {
		t.Fatalf("status with a tab open: %+v", st)
	}
	realBrowser(t, st.PID)
	if _, err := os.Stat(filepath.Join(st.UserDataDir, "DevToolsActivePort")); err != nil {
		t.Errorf("the profile is not the browser's: %v", err)
	}
	if len(groupProcesses(t, st.PID)) < 2 {
		t.Errorf("the browser's helpers are not in its process group")
	}
	tab.Close()
	if err := m.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if left := groupProcesses(t, st.PID); len(left) > 0 {
		t.Errorf("processes left after Close: %v", left)
	}
	if _, err := os.Stat(st.UserDataDir); !os.IsNotExist(err) {
		t.Errorf("the profile %s is still there: %v", st.UserDataDir, err)
	}
	if _, err := m.OpenTab(ctx); moltgate.ErrorCode(err) != moltgate.EUNAVAILABLE {
		t.Errorf("OpenTab after Close: %v", err)
	}
}

func TestManager_RelaunchAfterKill(t *testing.T) {
	m := newManager(t, nil)
	var log sessionLog
	srv := cdpServer(t, m, CDPConfig{Secret: testSecret, OnSession: log.add})
	ctx := testContext(t)

	var v map[string]any
	if status := httpJSON(t, "GET", srv.URL+"/cdp/json/version", bearer(testSecret), &v); status != 200 {
		t.Fatalf("json/version: %d", status)
	}
	first := m.Status()
	realBrowser(t, first.PID)

	// A client is mid-session when the browser dies.
	c := dialCDP(t, ctx, v["webSocketDebuggerUrl"].(string), nil)
	if _, err := c.call(ctx, "Browser.getVersion", nil); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusInternalError {
		t.Errorf("the client saw %v, want close 1011 when the browser died", err)
	}
	eventually(t, 30*time.Second, "the dead browser is noticed and its profile removed", func() bool {
		_, err := os.Stat(first.UserDataDir)
		return !m.Status().Running && os.IsNotExist(err)
	})

	// The next request gets a new browser that works.
	if status := httpJSON(t, "GET", srv.URL+"/cdp/json/version", bearer(testSecret), &v); status != 200 {
		t.Fatalf("json/version after the kill: %d %v", status, v)
	}
	second := m.Status()
	if second.Launches != 2 || second.PID == first.PID || !second.Running {
		t.Fatalf("after the kill: %+v (before: %+v)", second, first)
	}
	c2 := dialCDP(t, ctx, v["webSocketDebuggerUrl"].(string), nil)
	if _, err := c2.call(ctx, "Browser.getVersion", nil); err != nil {
		t.Fatalf("the new browser: %v", err)
	}
	if evs := log.all(); len(evs) < 2 || evs[1].State != SessionClosed || evs[1].ClosedBy != "browser" {
		t.Errorf("session events = %+v", evs)
	}
}

func TestManager_IdleClose(t *testing.T) {
	m := newManager(t, func(m *Manager) { m.IdleTimeout = 300 * time.Millisecond })
	ctx := testContext(t)
	tab, err := m.OpenTab(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := m.Status()
	// No idle timer runs while the tab holds the browser.
	m.mu.Lock()
	armed := m.idleTimer != nil
	m.mu.Unlock()
	if armed {
		t.Fatal("the idle timer runs while a tab is open")
	}
	tab.Close()
	eventually(t, 30*time.Second, "the idle browser is closed", func() bool {
		_, err := os.Stat(st.UserDataDir)
		return !m.Status().Running && os.IsNotExist(err) && len(groupProcesses(t, st.PID)) == 0
	})
	// Use launches a new one.
	tab, err = m.OpenTab(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	if st := m.Status(); st.Launches != 2 || !st.Running {
		t.Errorf("after an idle close: %+v", st)
	}
}

// Uses that arrive together while no browser runs share one launch; uses
// that race the idle timer each get a working browser.
func TestManager_ConcurrentFirstUse(t *testing.T) {
	m := newManager(t, func(m *Manager) { m.IdleTimeout = 200 * time.Millisecond })
	ctx := testContext(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			tab, err := m.OpenTab(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			tab.Close()
		})
	}
	wg.Wait()
	if st := m.Status(); st.Launches != 1 {
		t.Errorf("%d launches for four uses at once", st.Launches)
	}
	time.Sleep(100 * time.Millisecond)
	for range 3 {
		tab, err := m.OpenTab(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tab.Info(ctx); err != nil {
			t.Errorf("a tab opened as the idle timer fired: %v", err)
		}
		tab.Close()
		time.Sleep(190 * time.Millisecond) // just before the idle close
	}
}

func TestManager_NoBrowser(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	m := newManager(t, func(m *Manager) { m.ExecPath = "" })
	_, err := m.OpenTab(testContext(t))
	if moltgate.ErrorCode(err) != moltgate.EUNAVAILABLE || !strings.Contains(err.Error(), "apt-get install chromium") {
		t.Errorf("OpenTab without Chromium: %v", err)
	}
	if st := m.Status(); !strings.Contains(st.Error, "no Chromium found") {
		t.Errorf("Status without Chromium: %+v", st)
	}

	m2 := newManager(t, func(m *Manager) { m.ExecPath = "/nonexistent/chromium" })
	if _, err := m2.OpenTab(testContext(t)); err == nil || !strings.Contains(err.Error(), "CHROMIUM_PATH") {
		t.Errorf("OpenTab with a bad CHROMIUM_PATH: %v", err)
	}
}

func TestManager_StartFailure(t *testing.T) {
	// A "browser" that exits at once: the error carries what it said.
	fake := filepath.Join(t.TempDir(), "chromium")
	os.WriteFile(fake, []byte("#!/bin/sh\necho 'cannot open display: no X' >&2\nexit 3\n"), 0o755)
	m := newManager(t, func(m *Manager) { m.ExecPath = fake })
	_, err := m.OpenTab(testContext(t))
	if err == nil || !strings.Contains(err.Error(), "cannot open display: no X") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("OpenTab with a browser that fails: %v", err)
	}
	if st := m.Status(); st.Running {
		t.Errorf("status: %+v", st)
	}
}

// A "browser" that prints a DevTools address that cannot be used is
// stopped, not left running with nobody to stop it.
func TestManager_BadDevToolsAddress(t *testing.T) {
	for _, addr := range []string{"ws://[::1", "nonsense"} {
		dir := t.TempDir()
		fake := filepath.Join(dir, "chromium")
		script := fmt.Sprintf("#!/bin/sh\necho $$ > %s/pid\necho 'DevTools listening on %s' >&2\nexec sleep 60\n", dir, addr)
		if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		m := newManager(t, func(m *Manager) { m.ExecPath = fake })
		_, err := m.OpenTab(testContext(t))
		if err == nil || !strings.Contains(err.Error(), "cannot read the browser's DevTools address") {
			t.Errorf("%s: OpenTab = %v", addr, err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "pid"))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid == 0 {
			t.Fatalf("%s: the fake browser did not run", addr)
		}
		if syscall.Kill(pid, 0) == nil {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("%s: the browser (pid %d) still runs", addr, pid)
		}
	}
}

func TestManager_RemoteURL(t *testing.T) {
	for _, bad := range []string{"ftp://host:1", "http://", "ws://host:9222/json", "::"} {
		m := NewManager()
		m.RemoteURL = bad
		if err := m.Open(); err == nil || !strings.Contains(err.Error(), "BROWSER_CDP_URL") {
			t.Errorf("RemoteURL %q: %v", bad, err)
		}
	}

	// A launched browser stands in for a remote one (a container, a service).
	host := newManager(t, nil)
	l, err := host.acquire(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.release()
	site := pages(t, map[string]string{"/": `<title>remote</title>`})
	for _, remoteURL := range []string{l.inst.httpBase, l.inst.wsURL} {
		m := newManager(t, func(m *Manager) { m.RemoteURL = remoteURL; m.ExecPath = "/nonexistent" })
		ctx := testContext(t)
		tab, err := m.OpenTab(ctx)
		if err != nil {
			t.Fatalf("OpenTab on %s: %v", remoteURL, err)
		}
		p, err := tab.Navigate(ctx, site.URL+"/")
		if err != nil || p.Title != "remote" {
			t.Errorf("Navigate on %s: %+v, %v", remoteURL, p, err)
		}
		tab.Close()
		if err := m.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if st := host.Status(); !st.Running || st.Launches != 1 {
			t.Errorf("closing the attached manager stopped the remote browser: %+v", st)
		}
		if st := m.Status(); !st.Remote || st.Launches != 0 {
			t.Errorf("the attached manager launched: %+v", st)
		}
	}

	// A remote browser that is down is a clear error, without its token.
	m := newManager(t, func(m *Manager) { m.RemoteURL = "http://127.0.0.1:1/?token=hosted-secret" })
	_, err = m.OpenTab(testContext(t))
	if moltgate.ErrorCode(err) != moltgate.EUNAVAILABLE || strings.Contains(err.Error(), "hosted-secret") {
		t.Errorf("OpenTab on a remote browser that is down: %v", err)
	}
	var e *moltgate.Error
	if !errors.As(err, &e) {
		t.Errorf("not a moltgate error: %T", err)
	}
}

func TestManager_CloseEndsSessions(t *testing.T) {
	m := NewManager()
	m.ExecPath = chromiumPath
	m.Logger = testLogger(t)
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	srv := cdpServer(t, m, CDPConfig{Secret: testSecret})
	ctx := testContext(t)
	var v map[string]any
	httpJSON(t, "GET", srv.URL+"/cdp/json/version", http.Header{"Authorization": {"Bearer " + testSecret}}, &v)
	c := dialCDP(t, ctx, v["webSocketDebuggerUrl"].(string), nil)
	if _, err := c.call(ctx, "Browser.getVersion", nil); err != nil {
		t.Fatal(err)
	}
	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := m.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.c.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway && code != websocket.StatusInternalError {
		t.Errorf("client after Close: %v", err)
	}
}

func TestPathID(t *testing.T) {
	for id, want := range map[string]bool{
		"D2C5A9C42058D51843A5F4ADF42CCB67":     true,
		"5a8f3026-5f30-478d-9a10-9afbba70ca04": true,
		"":                                     false,
		"..":                                   false,
		"a/b":                                  false,
		"a?b":                                  false,
		strings.Repeat("a", 129):               false,
	} {
		if got := pathID(id); got != want {
			t.Errorf("pathID(%q) = %v", id, got)
		}
	}
}

// Close while a launch is under way leaves no browser and no profile behind.
func TestManager_CloseDuringLaunch(t *testing.T) {
	profiles := func() map[string]bool {
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "moltgate-chromium-*"))
		set := map[string]bool{}
		for _, d := range dirs {
			set[d] = true
		}
		return set
	}
	before := profiles()
	m := NewManager()
	m.ExecPath, m.Logger = chromiumPath, testLogger(t)
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		l, err := m.acquire(testContext(t))
		if err == nil {
			l.release()
		}
		done <- err
	}()
	eventually(t, 30*time.Second, "the launch has begun", func() bool { return len(profiles()) > len(before) })
	if err := m.Close(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; moltgate.ErrorCode(err) != moltgate.EUNAVAILABLE {
		t.Errorf("acquire during Close: %v", err)
	}
	for d := range profiles() {
		if !before[d] {
			t.Errorf("profile left behind: %s", d)
		}
	}
}
