package discord_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/channels/discord"
	"github.com/moltgate/moltgate/internal/fakediscord"
	"github.com/moltgate/moltgate/internal/syncbuf"
)

func TestRun_ConnectsWithIntents(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	if got := a.Status().State; got != moltgate.ChannelStopped {
		t.Fatalf("state before Run = %q, want stopped", got)
	}
	startReady(t, srv, a)

	st := a.Status()
	if st.Channel != "discord" || st.AccountID != srv.BotID || st.BotName != srv.BotName {
		t.Errorf("status = %+v, want channel discord, account %s, bot %s", st, srv.BotID, srv.BotName)
	}
	if st.LastActivity.IsZero() || st.Since.IsZero() || st.Reconnects != 0 || st.Error != "" {
		t.Errorf("status = %+v, want activity and since set, no reconnects, no error", st)
	}
	// GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT
	if got, want := srv.Intents(), int64(1|1<<9|1<<12|1<<15); got != want {
		t.Errorf("intents = %b, want %b", got, want)
	}
	// The gateway URL came from GET /api/v10/gateway/bot, asked with the token.
	var asked bool
	for _, r := range srv.Requests() {
		if r.Path == "/api/v10/gateway/bot" {
			asked = r.Header.Get("Authorization") == "Bot "+srv.Token && r.Status == 200
		}
	}
	if !asked {
		t.Errorf("the adapter did not ask GET /api/v10/gateway/bot with its token")
	}
	if got := srv.Connections("/gateway"); got != 1 {
		t.Errorf("gateway connections = %d, want 1", got)
	}
}

func TestRun_GatewayURLSkipsDiscovery(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv, func(c *discord.Config) { c.GatewayURL = srv.GatewayURL })
	startReady(t, srv, a)
	for _, r := range srv.Requests() {
		t.Errorf("unexpected REST request %s %s", r.Method, r.Path)
	}
}

func TestRun_StopsPromptlyAndRunsAgain(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	if got := a.Status().State; got != moltgate.ChannelStopped {
		t.Errorf("state after Run = %q, want stopped", got)
	}
	// The connection was closed politely (1000), which ends the session.
	waitStatus(t, a, "the fake to see the close", func(moltgate.ChannelStatus) bool { return len(srv.ClientCloses()) > 0 })
	if got := srv.ClientCloses(); len(got) != 1 || got[0] != 1000 {
		t.Errorf("client closes = %v, want [1000]", got)
	}

	r2 := startReady(t, srv, a)
	if got := srv.Identifies(); got != 2 {
		t.Errorf("identifies = %d, want 2 (a fresh session per Run)", got)
	}
	srv.DM("42", "alice", "again")
	if m := r2.next(t); m.Text != "again" {
		t.Errorf("second Run got %q, want again", m.Text)
	}
}

func TestRun_RefusesConcurrentRun(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	startReady(t, srv, a)
	if err := a.Run(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Run = %v, want already running", err)
	}
}

func TestRun_TokenRefusedByREST(t *testing.T) {
	srv := fakediscord.New(t)
	srv.RefuseToken(true)
	a := newAdapter(t, srv)
	err := start(t, a).result(t)
	want := "discord: the bot token was refused (401 Unauthorized): check DISCORD_BOT_TOKEN"
	if err == nil || err.Error() != want {
		t.Fatalf("Run = %v, want %q", err, want)
	}
	if st := a.Status(); st.State != moltgate.ChannelFailed || st.Error != want {
		t.Errorf("status = %+v, want failed with the error", st)
	}
}

func TestRun_TokenRefusedByGateway4004(t *testing.T) {
	srv := fakediscord.New(t)
	srv.RefuseToken(true)
	a := newAdapter(t, srv, func(c *discord.Config) { c.GatewayURL = srv.GatewayURL })
	err := start(t, a).result(t)
	want := "discord: the bot token was refused (4004 Authentication failed): check DISCORD_BOT_TOKEN"
	if err == nil || err.Error() != want {
		t.Fatalf("Run = %v, want %q", err, want)
	}
	if st := a.Status(); st.State != moltgate.ChannelFailed || st.Error != want {
		t.Errorf("status = %+v, want failed with the error", st)
	}
	if got := srv.Identifies(); got != 1 {
		t.Errorf("identifies = %d, want 1 (no retry with a refused token)", got)
	}
}

func TestRun_TokenResetWhileConnected(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)
	srv.RefuseToken(true)
	srv.DropConnection(t)
	err := r.result(t)
	if err == nil || !strings.Contains(err.Error(), "4004 Authentication failed") {
		t.Fatalf("Run = %v, want the 4004 error", err)
	}
	if got := srv.Resumes(); got != 1 {
		t.Errorf("resumes = %d, want 1 (the refusal came on RESUME)", got)
	}
	if st := a.Status(); st.State != moltgate.ChannelFailed {
		t.Errorf("state = %q, want failed", st.State)
	}
}

func TestRun_DisallowedIntent4014(t *testing.T) {
	srv := fakediscord.New(t)
	srv.DisallowMessageContent(true)
	a := newAdapter(t, srv)
	err := start(t, a).result(t)
	if err == nil || !strings.Contains(err.Error(), "4014") || !strings.Contains(err.Error(), "Message Content Intent") ||
		!strings.Contains(err.Error(), "developer portal") {
		t.Fatalf("Run = %v, want the 4014 error naming the Message Content intent and the developer portal", err)
	}
	if st := a.Status(); st.State != moltgate.ChannelFailed || st.Error != err.Error() {
		t.Errorf("status = %+v, want failed with the error", st)
	}
}

func TestRun_ServerErrorsThenRecovers(t *testing.T) {
	srv := fakediscord.New(t)
	srv.FailNext(fakediscord.RouteGatewayBot, 1000, fakediscord.Failure{Status: 503})
	a := newAdapter(t, srv)
	r := start(t, a)

	st := waitStatus(t, a, "connecting after two failures", func(st moltgate.ChannelStatus) bool {
		return st.State == moltgate.ChannelConnecting && st.Reconnects >= 2
	})
	if !strings.Contains(st.Error, "503") {
		t.Errorf("status error = %q, want the 503", st.Error)
	}
	srv.ClearFailures()
	st = waitRunning(t, a)
	if st.Reconnects < 2 || st.Error != "" {
		t.Errorf("status = %+v, want running with the reconnects counted and no error", st)
	}
	srv.DM("42", "alice", "hello")
	if m := r.next(t); m.Text != "hello" {
		t.Errorf("got %q, want hello", m.Text)
	}
}

func TestRun_ResumesAfterDrop(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)
	srv.DM("42", "alice", "before")
	if m := r.next(t); m.Text != "before" {
		t.Fatalf("got %q, want before", m.Text)
	}

	srv.DropConnection(t)
	srv.DM("42", "alice", "during") // lands while the bot is away
	if m := r.next(t); m.Text != "during" {
		t.Fatalf("after the drop got %q, want during (replayed on RESUME)", m.Text)
	}
	st := waitRunning(t, a)
	srv.DM("42", "alice", "after")
	// Nothing replayed twice: the next message is the new one.
	if m := r.next(t); m.Text != "after" {
		t.Fatalf("got %q, want after (before or during delivered twice?)", m.Text)
	}
	if st.Reconnects != 1 {
		t.Errorf("reconnects = %d, want 1", st.Reconnects)
	}
	if srv.Identifies() != 1 || srv.Resumes() != 1 || srv.Connections("/resume") != 1 {
		t.Errorf("identifies %d, resumes %d, resume connections %d; want 1, 1, 1 (RESUME at resume_gateway_url)",
			srv.Identifies(), srv.Resumes(), srv.Connections("/resume"))
	}
}

func TestRun_HonoursReconnectOp7(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)
	srv.SendReconnect(t)
	waitStatus(t, a, "running after a reconnect", func(st moltgate.ChannelStatus) bool {
		return st.State == moltgate.ChannelRunning && st.Reconnects == 1
	})
	srv.WaitReady(t, wait)
	if srv.Resumes() != 1 || srv.Identifies() != 1 {
		t.Errorf("resumes %d, identifies %d; want 1, 1", srv.Resumes(), srv.Identifies())
	}
	srv.DM("42", "alice", "still there?")
	if m := r.next(t); m.Text != "still there?" {
		t.Errorf("got %q", m.Text)
	}
}

func TestRun_ReidentifiesAfterInvalidSession(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)
	srv.InvalidateSession(t, false)
	waitStatus(t, a, "running after re-identifying", func(st moltgate.ChannelStatus) bool {
		return st.State == moltgate.ChannelRunning && st.Reconnects == 1
	})
	srv.WaitReady(t, wait)
	if srv.Identifies() != 2 || srv.Resumes() != 0 {
		t.Errorf("identifies %d, resumes %d; want 2, 0", srv.Identifies(), srv.Resumes())
	}
	srv.DM("42", "alice", "new session")
	if m := r.next(t); m.Text != "new session" {
		t.Errorf("got %q", m.Text)
	}
}

func TestRun_ReidentifiesAfterSessionTimeout4009(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	startReady(t, srv, a)
	srv.CloseGateway(t, 4009, "Session timed out.")
	waitStatus(t, a, "running after re-identifying", func(st moltgate.ChannelStatus) bool {
		return st.State == moltgate.ChannelRunning && st.Reconnects == 1
	})
	if srv.Identifies() != 2 || srv.Resumes() != 0 {
		t.Errorf("identifies %d, resumes %d; want 2, 0", srv.Identifies(), srv.Resumes())
	}
}

func TestRun_ExpiredSessionIdentifiesAgain(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)
	srv.ExpireSession(t) // RESUME gets op 9 (not resumable), then IDENTIFY
	waitStatus(t, a, "running again", func(st moltgate.ChannelStatus) bool {
		return st.State == moltgate.ChannelRunning && st.Reconnects == 2
	})
	srv.WaitReady(t, wait)
	if srv.Identifies() != 2 || srv.Resumes() != 1 {
		t.Errorf("identifies %d, resumes %d; want 2, 1", srv.Identifies(), srv.Resumes())
	}
	srv.DM("42", "alice", "new session")
	if m := r.next(t); m.Text != "new session" {
		t.Errorf("got %q", m.Text)
	}
}

func TestRun_HeartbeatsAndZombieConnection(t *testing.T) {
	srv := fakediscord.New(t)
	srv.SetHeartbeatInterval(20 * time.Millisecond)
	a := newAdapter(t, srv)
	r := startReady(t, srv, a)
	first := a.Status().LastActivity
	waitStatus(t, a, "activity from heartbeat ACKs", func(st moltgate.ChannelStatus) bool {
		return srv.Heartbeats() >= 3 && st.LastActivity.After(first)
	})
	if st := a.Status(); st.Reconnects != 0 {
		t.Fatalf("reconnects = %d with ACKed heartbeats, want 0", st.Reconnects)
	}

	srv.StopHeartbeatACKs(true)
	waitStatus(t, a, "a reconnect after unacknowledged heartbeats", func(st moltgate.ChannelStatus) bool {
		return st.Reconnects >= 1 && srv.Resumes() >= 1
	})
	srv.StopHeartbeatACKs(false)
	waitRunning(t, a)
	closes := srv.ClientCloses()
	if len(closes) == 0 || closes[0] == 1000 {
		t.Errorf("client closes = %v, want the zombie cut without 1000 (so it can resume)", closes)
	}
	srv.WaitReady(t, wait)
	srv.DM("42", "alice", "back")
	if m := r.next(t); m.Text != "back" {
		t.Errorf("got %q", m.Text)
	}
}

// TestRun_TokenNeverLogged runs every path that handles the token at debug
// level and looks for it in the logs and errors.
func TestRun_TokenNeverLogged(t *testing.T) {
	srv := fakediscord.New(t)
	srv.SetHeartbeatInterval(20 * time.Millisecond)
	var buf syncbuf.Buffer
	a := newAdapter(t, srv, func(c *discord.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	r := startReady(t, srv, a)
	srv.DM("42", "alice", "hi")
	m := r.next(t)
	ctx := t.Context()
	var errs []error
	_, err := a.Send(ctx, moltgate.OutboundMessage{ChannelAddress: m.ChannelAddress, Text: "hello", ReplyToID: m.MessageID})
	errs = append(errs, err)
	srv.FailNext(fakediscord.RouteCreateMessage, 1, fakediscord.Failure{Status: 429, RetryAfter: time.Second})
	_, err = a.Send(ctx, moltgate.OutboundMessage{ChannelAddress: m.ChannelAddress, Text: "hello"})
	errs = append(errs, err)
	srv.FailNext(fakediscord.RouteTyping, 1, fakediscord.Failure{Status: 401})
	errs = append(errs, a.Typing(ctx, m.ChannelAddress))
	srv.DropConnection(t) // RESUME carries the token too
	waitStatus(t, a, "resumed", func(st moltgate.ChannelStatus) bool { return st.Reconnects == 1 && st.State == moltgate.ChannelRunning })
	srv.RefuseToken(true)
	srv.DropConnection(t)
	errs = append(errs, r.result(t))

	if !strings.Contains(buf.String(), "new request") {
		t.Fatalf("debug logs missing (the test would prove nothing): %s", buf.String())
	}
	secret := strings.Split(srv.Token, ".")[2]
	if strings.Contains(buf.String(), secret) {
		t.Errorf("the token appears in the logs:\n%s", buf.String())
	}
	for _, err := range errs {
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("the token appears in an error: %v", err)
		}
	}
	if errs[len(errs)-1] == nil {
		t.Errorf("Run returned nil after the token was refused")
	}
}

func TestNew_RejectsBadConfig(t *testing.T) {
	const secret = "S3cr3tS1gnatur3xxxxxxxxxxxx"
	good := fakediscord.MakeToken("123456789012345678")
	tests := []struct {
		name string
		cfg  discord.Config
		want string // in the error
	}{
		{"no token", discord.Config{}, "Token is required"},
		{"Bot prefix", discord.Config{Token: "Bot " + good}, `without the "Bot " prefix`},
		{"two parts", discord.Config{Token: "MTIzNDU2." + secret}, "three dot-separated parts"},
		{"empty part", discord.Config{Token: "MTIzNDU2.." + secret}, "three dot-separated parts"},
		{"inner space", discord.Config{Token: "MTIzNDU2.abc. " + secret}, "three dot-separated parts"},
		{"not base64", discord.Config{Token: "%%%%.abc." + secret}, "base64 of an application id"},
		{"not an id", discord.Config{Token: "aGVsbG8.abc." + secret}, "base64 of an application id"}, // base64("hello")
		{"relative APIURL", discord.Config{Token: good, APIURL: "discord.com"}, "APIURL"},
		{"ftp APIURL", discord.Config{Token: good, APIURL: "ftp://discord.com"}, "APIURL"},
		{"http GatewayURL", discord.Config{Token: good, GatewayURL: "http://gateway.discord.gg"}, "GatewayURL"},
		{"negative backoff", discord.Config{Token: good, BackoffBase: -time.Second}, "BackoffBase"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := discord.New(tt.cfg)
			if err == nil {
				t.Fatalf("New = %v, want an error containing %q", a, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), strings.Split(good, ".")[2]) {
				t.Errorf("error %q echoes the token", err)
			}
		})
	}

	a, err := discord.New(discord.Config{Token: " " + good + "\n"}) // pasted with whitespace
	if err != nil {
		t.Fatalf("New with a valid token: %v", err)
	}
	if a.Name() != "discord" {
		t.Errorf("Name = %q", a.Name())
	}
}

func TestRun_ConnectionRefusedIsTransient(t *testing.T) {
	srv := fakediscord.New(t)
	a := newAdapter(t, srv, func(c *discord.Config) { c.GatewayURL = "ws://127.0.0.1:1/gateway" })
	r := start(t, a)
	st := waitStatus(t, a, "connecting with failures counted", func(st moltgate.ChannelStatus) bool {
		return st.State == moltgate.ChannelConnecting && st.Reconnects >= 2
	})
	if !strings.Contains(st.Error, "cannot connect to the gateway") {
		t.Errorf("status error = %q", st.Error)
	}
	if err := r.stop(t); err != nil {
		t.Errorf("Run = %v after cancel while reconnecting, want nil", err)
	}
	if got := a.Status().State; got != moltgate.ChannelStopped {
		t.Errorf("state = %q, want stopped", got)
	}
}
