package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/commands"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/fakellm"
	"github.com/moltgate/moltgate/internal/fakes3"
	"github.com/moltgate/moltgate/internal/faketelegram"
	"github.com/moltgate/moltgate/internal/syncbuf"
)

// child is the real moltgate process (this test binary running main).
type child struct {
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
}

// startChild starts moltgate with vars and waits until it is ready.
func startChild(t *testing.T, vars map[string]string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "MOLTGATE_RUN_MAIN=1", "AWS_CA_BUNDLE=")
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c := &child{cmd: cmd, stderr: &syncbuf.Buffer{}}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(c.stderr.String(), "msg=ready") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("not ready:\n%s", c.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c
}

// kill9 ends the process the way a crash or a lost container does.
func (c *child) kill9(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
}

// readLog opens a log file read-only (the process has stopped).
func readLog(t *testing.T, dataDir string) *eventlog.Log {
	t.Helper()
	l, err := openReadOnly(filepath.Join(dataDir, "moltgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// restoredLog is what a new container would find: the replica restored to
// an empty disk, opened read-only.
func restoredLog(t *testing.T, cfg eventlog.ReplicaConfig) *eventlog.Log {
	t.Helper()
	l, err := restoreReadOnly(context.Background(), cfg, eventlog.RestoreOptions{OutputPath: filepath.Join(t.TempDir(), "restored.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// kill -9 while the model is writing the reply: at the next start the run
// is closed as interrupted (never left "running"), and the person who
// asked, here on Telegram, is told.
func TestCrash_DuringAModelReply(t *testing.T) {
	tg := faketelegram.New(t)
	model := fakellm.NewOpenAI(t)
	model.Script(fakellm.Step{Tokens: fakellm.Tokens("a long and slow answer"), FirstDelay: time.Minute})
	vars, _ := testEnv(t, map[string]string{"MOLTGATE_LISTEN": "127.0.0.1:0", "OPENAI_API_KEY": "sk-test-key-for-the-fake", "OPENAI_BASE_URL": model.URL,
		"TELEGRAM_BOT_TOKEN": tg.Token, "TELEGRAM_API_URL": tg.URL, "TELEGRAM_DM_ALLOW_FROM": "1001"})
	c := startChild(t, vars)
	tg.DM(faketelegram.User{ID: 1001, FirstName: "Owner"}, "tell me something")
	waitFor(t, "the model to be asked", func() bool { return len(model.Requests()) > 0 })
	c.kill9(t)

	l := readLog(t, vars["MOLTGATE_DATA_DIR"])
	if open := openRuns(t, l); open != 1 {
		t.Fatalf("%d runs open after the crash, want the one that was running", open)
	}
	l.Close(context.Background())

	startChild(t, vars)
	waitFor(t, "the sender to be told", func() bool {
		return count(sentTexts(tg), "restarted before it finished") == 1
	})
	l = readLog(t, vars["MOLTGATE_DATA_DIR"])
	if open := openRuns(t, l); open != 0 {
		t.Fatalf("%d runs still open after the restart", open)
	}
	events, _ := l.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventChatRunFinished})
	var d moltgate.ChatRunFinishedData
	if len(events) != 1 || events[0].Decode(&d) != nil || d.Status != moltgate.RunInterrupted || d.Error != commands.InterruptedMessage {
		t.Fatalf("run finished events = %+v", events)
	}
}

// kill -9 between the model's reply and its delivery, on each platform:
// after the restart the reply is delivered exactly once, and the message
// that asked is not answered twice.
func TestCrash_BetweenReplyAndDelivery(t *testing.T) {
	for _, newPlatform := range platforms {
		p := newPlatform(t)
		t.Run(p.name, func(t *testing.T) {
			p.fail(1000) // the platform cannot take messages for now
			vars, _ := testEnv(t, p.env("1001"))
			vars["MOLTGATE_LISTEN"] = "127.0.0.1:0"
			c := startChild(t, vars)
			p.ready(t)
			p.dm("1001", "Owner", "are you there")
			l := readLogWhenRunning(t, vars["MOLTGATE_DATA_DIR"])
			waitFor(t, "a failed delivery attempt", func() bool {
				failed, _ := l.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventChannelDeliveryFailed})
				return len(failed) > 0
			})
			c.kill9(t)
			if n := len(p.sent()); n != 0 {
				t.Fatalf("%d messages delivered while the platform was down", n)
			}

			p.fail(0)
			startChild(t, vars)
			waitFor(t, "the reply", func() bool { return count(p.sent(), "You said: are you there") == 1 })
			time.Sleep(2 * time.Second) // room for a duplicate to show up
			if n := count(p.sent(), "You said: are you there"); n != 1 || len(p.sent()) != 1 {
				t.Fatalf("the reply was delivered %d times (%d messages)", n, len(p.sent()))
			}
			runs, _ := l.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventChatRunStarted})
			sent, _ := l.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventChannelDeliverySent})
			if len(runs) != 1 || len(sent) != 1 {
				t.Fatalf("%d runs and %d delivery records, want 1 and 1", len(runs), len(sent))
			}
		})
	}
}

// readLogWhenRunning opens the log of a running gateway read-only (it
// polls for new commits).
func readLogWhenRunning(t *testing.T, dataDir string) *eventlog.Log {
	t.Helper()
	waitFor(t, "the log file", func() bool {
		_, err := os.Stat(filepath.Join(dataDir, "moltgate.db"))
		return err == nil
	})
	return readLog(t, dataDir)
}

func sentTexts(f *faketelegram.Server) (out []string) {
	for _, m := range f.Sent() {
		out = append(out, m.Text)
	}
	return out
}

// openRuns counts runs started and not finished.
func openRuns(t *testing.T, l *eventlog.Log) int {
	t.Helper()
	started, _ := l.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventChatRunStarted})
	finished, _ := l.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventChatRunFinished})
	return len(started) - len(finished)
}

// A planned sleep loses nothing: a burst of chat messages, SIGTERM at
// once, then a cold start from the S3 server alone finds every message
// that was acknowledged.
func TestServe_SIGTERMFlushesABurst(t *testing.T) {
	s3 := fakes3.New(t)
	const token = "sigterm-burst-token-0123456789"
	vars, _ := testEnv(t, s3.Env("burst"))
	vars["MOLTGATE_LISTEN"], vars["MOLTBOT_GATEWAY_TOKEN"] = "127.0.0.1:"+freePort(t), token
	c := startChild(t, vars)
	ws := localClient(t, "ws://"+vars["MOLTGATE_LISTEN"], token)
	const burst = 200
	for i := 0; i < burst; i++ {
		ws.send(t, "chat.send", map[string]any{"sessionKey": "burst", "message": fmt.Sprint("message ", i), "idempotencyKey": fmt.Sprint("b", i)})
	}
	acked := 0
	for acked < burst {
		if f := ws.read(t); f["type"] == "res" {
			if f["ok"] != true {
				t.Fatalf("chat.send refused: %v", f)
			}
			acked++
		}
	}
	c.cmd.Process.Signal(syscall.SIGTERM) // the container is put to sleep
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, c.stderr.String())
	}

	// A new container: an empty disk, only the bucket.
	l := restoredLog(t, s3.Config("burst"))
	msgs, _ := l.Query(context.Background(), eventlog.Filter{Stream: moltgate.SessionStream("burst"), TypePrefix: moltgate.EventChatMessageAdded})
	got := map[string]bool{}
	for _, e := range msgs {
		var d moltgate.ChatMessageAddedData
		if e.Decode(&d) == nil && d.Role == "user" {
			got[d.Content] = true
		}
	}
	for i := 0; i < burst; i++ {
		if !got[fmt.Sprint("message ", i)] {
			t.Fatalf("message %d was acknowledged but is not in the replica (%d of %d are)", i, len(got), burst)
		}
	}
	if open := openRuns(t, l); open != 0 {
		t.Fatalf("%d runs left open by a planned stop\n%s", open, c.stderr.String())
	}
	// Each run ended once, answered or aborted by the stop: a planned stop
	// fails none and leaves none to be found interrupted at the next start.
	finished, _ := l.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventChatRunFinished})
	ends := map[string]int{}
	statuses := map[string]int{}
	for _, e := range finished {
		var d moltgate.ChatRunFinishedData
		if err := e.Decode(&d); err != nil {
			t.Fatal(err)
		}
		ends[d.RunID]++
		statuses[d.Status]++
	}
	for run, n := range ends {
		if n != 1 {
			t.Errorf("run %s ended %d times", run, n)
		}
	}
	if len(ends) != burst || statuses[moltgate.RunCompleted]+statuses[moltgate.RunAborted] != burst {
		t.Errorf("%d runs ended, by status %v; want %d, each completed or aborted", len(ends), statuses, burst)
	}
}

// wsClient is a local, token-only gateway client (loopback needs no
// device identity).
type wsClient struct {
	ws *websocket.Conn
	n  int
}

func localClient(t *testing.T, url, token string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(16 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	c := &wsClient{ws: ws}
	c.read(t) // the challenge
	c.send(t, "connect", map[string]any{"minProtocol": 4, "maxProtocol": 4, "role": "operator", "scopes": []string{"operator.write"},
		"client": map[string]any{"id": "cli", "mode": "cli"}, "auth": map[string]any{"token": token}})
	if f := c.read(t); f["ok"] != true {
		t.Fatalf("connect = %v", f)
	}
	return c
}

func (c *wsClient) send(t *testing.T, method string, params any) {
	t.Helper()
	c.n++
	data, _ := json.Marshal(map[string]any{"type": "req", "id": fmt.Sprint(c.n), "method": method, "params": params})
	if err := c.ws.Write(context.Background(), websocket.MessageText, data); err != nil {
		t.Fatal(err)
	}
}

func (c *wsClient) read(t *testing.T) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, data, err := c.ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	json.Unmarshal(data, &f)
	return f
}

// freePort is a loopback port free a moment ago, for a process that must
// be told its address before it starts.
func freePort(tb testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
