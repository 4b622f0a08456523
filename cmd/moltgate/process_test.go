package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/commands"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/fakellm"
	"github.com/moltgate/moltgate/internal/faketelegram"
)

// child is the real moltgate process (this test binary running main).
type child struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
}

// startChild starts moltgate with vars and waits until it is ready.
func startChild(t *testing.T, vars map[string]string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "MOLTGATE_RUN_MAIN=1", "AWS_CA_BUNDLE=")
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c := &child{cmd: cmd, stderr: &syncBuffer{}}
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
	l := eventlog.NewLog(filepath.Join(dataDir, "moltgate.db"))
	l.ReadOnly = true
	if err := l.Open(); err != nil {
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

// kill -9 between the model's reply and its delivery: after the restart
// the reply is delivered exactly once, and the message that asked is not
// answered twice.
func TestCrash_BetweenReplyAndDelivery(t *testing.T) {
	tg := faketelegram.New(t)
	tg.FailNext("sendMessage", 1000, faketelegram.Failure{Status: 502}) // Telegram is down for now
	vars, _ := testEnv(t, map[string]string{"MOLTGATE_LISTEN": "127.0.0.1:0",
		"TELEGRAM_BOT_TOKEN": tg.Token, "TELEGRAM_API_URL": tg.URL, "TELEGRAM_DM_ALLOW_FROM": "1001"})
	c := startChild(t, vars)
	tg.DM(faketelegram.User{ID: 1001, FirstName: "Owner"}, "are you there")
	waitFor(t, "a delivery attempt", func() bool { return len(tg.RequestsTo("sendMessage")) > 0 })
	c.kill9(t)
	if n := len(tg.Sent()); n != 0 {
		t.Fatalf("%d messages delivered while Telegram was down", n)
	}

	tg.ClearFailures()
	startChild(t, vars)
	waitFor(t, "the reply", func() bool { return count(sentTexts(tg), "You said: are you there") == 1 })
	time.Sleep(2 * time.Second) // room for a duplicate to show up
	if n := count(sentTexts(tg), "You said: are you there"); n != 1 || len(tg.Sent()) != 1 {
		t.Fatalf("the reply was delivered %d times (%d messages)", n, len(tg.Sent()))
	}
	l := readLog(t, vars["MOLTGATE_DATA_DIR"])
	runs, _ := l.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventChatRunStarted})
	sent, _ := l.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventChannelDeliverySent})
	if len(runs) != 1 || len(sent) != 1 {
		t.Fatalf("%d runs and %d delivery records, want 1 and 1", len(runs), len(sent))
	}
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
