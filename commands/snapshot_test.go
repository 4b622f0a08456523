package commands_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/commands"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/projections"
	"github.com/moltgate/moltgate/secrets"
)

// Read models saved at close and loaded at the next start are the read
// models the log gives: device tokens, decisions, open runs, the outbox's
// pending deliveries and the runs it waits on, the workspace.
func TestSnapshots_RoundTrip(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l := eventlog.NewLog(filepath.Join(dir, "moltgate.db"))
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	start := func() (*commands.Service, *projections.Runner, int64) {
		set := projections.NewSet()
		r := projections.NewRunner(l, set.All()...)
		r.SnapshotDir = filepath.Join(dir, "snapshots")
		n, err := r.RunToEnd(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r.Start(ctx)
		s := commands.New(l, r, set)
		key, _ := secrets.ParseKey(strings.Repeat("11", 32))
		s.Sealer, _ = secrets.NewSealer(key)
		s.Runs = &queue{}
		return s, r, n
	}
	s, r, _ := start()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	id, _, err := s.RequestPairing(ctx, moltgate.Device{DeviceID: "d", PublicKey: "p", Role: "operator"}, moltgate.Meta{})
	must(err)
	_, err = s.ApprovePairing(ctx, id, moltgate.OwnerScopes, owner)
	must(err)
	_, err = s.IssueToken(ctx, "d", owner)
	must(err)
	_, _, err = s.RequestPairing(ctx, moltgate.Device{DeviceID: "e", PublicKey: "p", Role: "operator"}, moltgate.Meta{})
	must(err)
	rejected, _, err := s.RequestPairing(ctx, moltgate.Device{DeviceID: "f", PublicKey: "p", Role: "operator"}, moltgate.Meta{})
	must(err)
	_, err = s.RejectPairing(ctx, rejected, "unknown", owner)
	must(err)
	origin := &moltgate.ChannelAddress{Channel: "telegram", ChatID: "1", Sender: "1"}
	run, err := s.SendMessage(ctx, moltgate.RunRequest{SessionKey: "k", Message: "hi", Origin: origin}, owner)
	must(err)
	_, _, err = s.RequestChannelPairing(ctx, "telegram", "9", "x", origin, moltgate.Meta{})
	must(err)
	must(s.ChangeAllowlist(ctx, "discord", []string{"7"}, nil, owner))
	must(s.WriteWorkspaceFile(ctx, "SOUL.md", "soul", owner))
	_, err = s.ApplyConfig(ctx, json.RawMessage(`{"agents":{}}`), "", owner)
	must(err)

	now := time.Now()
	dump := func(set *projections.Set) string {
		dev, _ := set.Devices.Device("d")
		decision, deviceID, _ := set.Devices.Decision(id)
		changed, _ := set.Workspace.Changed("SOUL.md")
		_, _, configVersion := set.Config.CurrentVersion()
		b, err := json.Marshal([]any{set.View(0, now), dev.TokenHash, decision, deviceID, set.Outbox.PendingDeliveries(),
			set.Workspace.WorkspaceFiles(), changed.UnixMilli(), set.Workspace.StreamVersion(), set.Sessions.WithOpenRuns(),
			configVersion, set.Channels.StreamVersion("telegram")})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	before := dump(s.Models)
	must(r.Close())

	s2, r2, replayed := start()
	defer r2.Close()
	if replayed != 0 {
		t.Fatalf("replayed %d events, want the snapshots to cover the log", replayed)
	}
	if after := dump(s2.Models); after != before {
		t.Fatalf("read models differ after a snapshot round trip:\nbefore %s\nafter  %s", before, after)
	}
	// The outbox still knows where the open run came from.
	must(s2.FinishRun(ctx, "k", run.RunID, &moltgate.ChatMessage{Content: "hello"}, moltgate.RunCompleted, "", owner))
	found := false
	for _, d := range s2.Models.Outbox.PendingDeliveries() {
		found = found || d.Kind == moltgate.DeliveryReply && d.RunID == run.RunID && d.To == *origin
	}
	if !found {
		t.Fatalf("no reply delivery after the snapshot: %+v", s2.Models.Outbox.PendingDeliveries())
	}
}
