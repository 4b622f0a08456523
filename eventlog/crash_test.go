package eventlog_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
)

// TestMain turns the test binary into a child process when asked: the
// crash test's appender (see crashChild) or the idle-memory probe (see
// rssChild).
func TestMain(m *testing.M) {
	if path := os.Getenv("MOLTGATE_CRASH_CHILD"); path != "" {
		crashChild(path)
		return
	}
	if spec := os.Getenv("MOLTGATE_RSS_CHILD"); spec != "" {
		rssChild(spec)
		return
	}
	os.Exit(m.Run())
}

// crashChild appends in a loop from several goroutines and prints the id of
// every event whose Append returned, until it is killed.
func crashChild(path string) {
	l := eventlog.NewLog(path)
	if err := l.Open(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for w := 0; w < 4; w++ {
		go func(w int) {
			for i := 0; ; i++ {
				e := moltgate.MustEvent(fmt.Sprintf("crash-%d", w), "crash.appended", map[string]int{"i": i}, moltgate.Meta{})
				if _, err := l.Append(context.Background(), e); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(out, "ok %s\n", e.ID)
				out.Flush()
				mu.Unlock()
			}
		}(w)
	}
	select {}
}

// TestCrash kills an appending process with SIGKILL again and again. After
// every kill the file must open, pass integrity_check, and hold every event
// whose append had returned, with no gap in seq.
func TestCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	acked := map[string]bool{}
	const kills = 15
	for k := 0; k < kills; k++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "MOLTGATE_CRASH_CHILD="+path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1<<16)
		first := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stdout)
			for n := 0; sc.Scan(); n++ {
				if n == 0 {
					close(first)
				}
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Kill it at a random moment once it is appending (a -race child
		// takes a while to start, and a kill before the log exists proves
		// nothing).
		select {
		case <-first:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("the child never appended: %s", stderr.String())
		}
		time.Sleep(time.Duration(rand.IntN(250)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		for line := range lines {
			// Only whole lines count: a torn last line was not acknowledged.
			if id, ok := strings.CutPrefix(line, "ok "); ok && len(id) == 36 {
				acked[id] = true
			}
		}
		cmd.Wait()
		if strings.TrimSpace(stderr.String()) != "" {
			t.Fatalf("child failed: %s", stderr.String())
		}
		checkAfterCrash(t, path, acked)
	}
	if len(acked) < kills {
		t.Fatalf("only %d appends were acknowledged over %d runs", len(acked), kills)
	}
	t.Logf("%d kills, %d acknowledged events, all present", kills, len(acked))
}

func checkAfterCrash(t *testing.T, path string, acked map[string]bool) {
	t.Helper()
	db, err := sql.Open("sqlite", eventlog.DSN(path))
	if err != nil {
		t.Fatal(err)
	}
	var ok string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check = %q, %v", ok, err)
	}
	var n, max int64
	if err := db.QueryRow(`SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM events`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != max {
		t.Fatalf("%d events but max seq %d: a gap", n, max)
	}
	stored := make(map[string]bool, n)
	rows, err := db.Query(`SELECT id FROM events`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		stored[id] = true
	}
	rows.Close()
	db.Close()
	for id := range acked {
		if !stored[id] {
			t.Fatalf("acknowledged event %s is missing after the crash", id)
		}
	}
}
