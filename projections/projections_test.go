package projections_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/projections"
)

func MustOpenLog(tb testing.TB) *eventlog.Log {
	tb.Helper()
	l := eventlog.NewLog(filepath.Join(tb.TempDir(), "moltgate.db"))
	if err := l.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func mustAppend(tb testing.TB, l *eventlog.Log, events ...moltgate.Event) []moltgate.Event {
	tb.Helper()
	got, err := l.Append(context.Background(), events...)
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

var admin = moltgate.Meta{Actor: "owner@example.com", Source: moltgate.SourceUI}

func TestDevices_Lifecycle(t *testing.T) {
	l := MustOpenLog(t)
	set := projections.NewSet()
	r := projections.NewRunner(l, set.All()...)
	ctx := context.Background()
	if _, err := r.RunToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	r.Start(ctx)
	defer r.Close()

	future := time.Now().Add(5 * time.Minute).UnixMilli()
	req := func(reqID, dev string, expires int64) moltgate.Event {
		return moltgate.MustEvent(moltgate.DeviceStream(dev), moltgate.EventDevicePairingRequested, moltgate.DevicePairingRequestedData{
			RequestID: reqID, DeviceID: dev, PublicKey: "pk-" + dev, Platform: "linux", Role: "operator",
			Scopes: []string{"operator.read"}, ExpiresAtMs: expires}, moltgate.Meta{Source: moltgate.SourceWS})
	}
	mustAppend(t, l, req("r1", "d1", future), req("r2", "d2", future), req("r3", "d3", time.Now().Add(-time.Second).UnixMilli()))
	got := mustAppend(t, l, moltgate.MustEvent(moltgate.DeviceStream("d1"), moltgate.EventDevicePairingApproved,
		moltgate.DevicePairingApprovedData{RequestID: "r1", DeviceID: "d1", Role: "operator", Scopes: []string{"operator.read"}, TokenHash: "h1"}, admin))
	if err := r.WaitFor(ctx, got[0].Seq); err != nil {
		t.Fatal(err)
	}
	pending := set.Devices.Pending(time.Now())
	if len(pending) != 1 || pending[0].RequestID != "r2" {
		t.Fatalf("pending = %+v, want only r2 (r1 approved, r3 expired)", pending)
	}
	dev, ok := set.Devices.Device("d1")
	if !ok || dev.TokenHash != "h1" || !dev.HasToken || dev.PublicKey != "pk-d1" || dev.State != moltgate.DevicePaired || dev.Version != 2 {
		t.Fatalf("paired d1 = %+v", dev)
	}

	got = mustAppend(t, l,
		moltgate.MustEvent(moltgate.DeviceStream("d1"), moltgate.EventDeviceTokenRotated, moltgate.DeviceTokenRotatedData{DeviceID: "d1", TokenHash: "h2"}, admin),
		moltgate.MustEvent(moltgate.DeviceStream("d2"), moltgate.EventDevicePairingRejected, moltgate.DevicePairingRejectedData{RequestID: "r2", DeviceID: "d2", Reason: "unknown"}, admin),
	)
	r.WaitFor(ctx, got[1].Seq)
	if dev, _ := set.Devices.Device("d1"); dev.TokenHash != "h2" {
		t.Fatalf("token not rotated: %+v", dev)
	}
	if p := set.Devices.Pending(time.Now()); len(p) != 0 {
		t.Fatalf("pending after reject = %+v", p)
	}
	got = mustAppend(t, l,
		moltgate.MustEvent(moltgate.DeviceStream("d1"), moltgate.EventDeviceTokenRevoked, moltgate.DeviceTokenRevokedData{DeviceID: "d1"}, admin),
		moltgate.MustEvent(moltgate.DeviceStream("d1"), moltgate.EventDeviceRemoved, moltgate.DeviceRemovedData{DeviceID: "d1"}, admin),
	)
	r.WaitFor(ctx, got[1].Seq)
	if _, ok := set.Devices.Device("d1"); ok {
		t.Fatal("d1 still paired after removal")
	}
	res := set.Devices.Resolved()
	if len(res) != 2 || res[0].State != moltgate.DeviceRejected || res[1].State != moltgate.DeviceRemoved || res[1].PublicKey != "pk-d1" {
		t.Fatalf("resolved = %+v", res)
	}
}

func TestChannelAccess(t *testing.T) {
	c := projections.NewChannelAccess()
	at := time.Now()
	apply := func(typ string, data any) {
		t.Helper()
		e := moltgate.MustEvent(moltgate.ChannelStream("telegram"), typ, data, admin)
		e.RecordedAt = at
		if err := c.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	exp := at.Add(time.Hour).UnixMilli()
	apply(moltgate.EventChannelPairingRequested, moltgate.ChannelPairingRequestedData{Channel: "telegram", SenderID: "42", Code: "AAAA", ExpiresAtMs: exp})
	apply(moltgate.EventChannelPairingRequested, moltgate.ChannelPairingRequestedData{Channel: "telegram", SenderID: "42", Code: "BBBB", ExpiresAtMs: exp})
	apply(moltgate.EventChannelPairingRequested, moltgate.ChannelPairingRequestedData{Channel: "telegram", SenderID: "7", Code: "CCCC", ExpiresAtMs: exp})
	if p := c.Pending("telegram", at); len(p) != 2 {
		t.Fatalf("pending = %+v, want one code per sender", p)
	}
	apply(moltgate.EventChannelPairingApproved, moltgate.ChannelPairingResolvedData{Channel: "telegram", SenderID: "42", Code: "BBBB"})
	apply(moltgate.EventChannelPairingRejected, moltgate.ChannelPairingResolvedData{Channel: "telegram", SenderID: "7", Code: "CCCC"})
	apply(moltgate.EventChannelAllowlistChanged, moltgate.ChannelAllowlistChangedData{Channel: "telegram", Added: []string{"99", "100"}, Removed: []string{"100"}})
	if got := fmt.Sprint(c.Allowlist("telegram")); got != "[42 99]" {
		t.Fatalf("allowlist = %s", got)
	}
	if !c.Allowed("telegram", "42") || c.Allowed("telegram", "7") || c.Allowed("discord", "42") {
		t.Fatal("Allowed disagrees with the allowlist")
	}
	if p := c.Pending("", at); len(p) != 0 {
		t.Fatalf("pending after resolution = %+v", p)
	}
	if p := c.Pending("", at.Add(2*time.Hour)); len(p) != 0 {
		t.Fatal("expired codes listed")
	}
}

func TestConfigAndSessions(t *testing.T) {
	l := MustOpenLog(t)
	set := projections.NewSet()
	mustAppend(t, l,
		moltgate.MustEvent(moltgate.StreamConfig, moltgate.EventConfigApplied, moltgate.ConfigAppliedData{Document: json.RawMessage(`{"a":1}`), Hash: "h1"}, admin),
		moltgate.MustEvent(moltgate.SessionStream("main"), moltgate.EventChatMessageAdded, moltgate.ChatMessageAddedData{SessionKey: "main", Role: "user", Content: "hi"}, admin),
		moltgate.MustEvent(moltgate.SessionStream("main"), moltgate.EventChatRunStarted, moltgate.ChatRunStartedData{SessionKey: "main", RunID: "run1"}, admin),
		moltgate.MustEvent(moltgate.SessionStream("main"), moltgate.EventChatMessageAdded, moltgate.ChatMessageAddedData{SessionKey: "main", Role: "assistant", Content: "hello"}, admin),
		moltgate.MustEvent(moltgate.SessionStream("main"), moltgate.EventChatRunFinished, moltgate.ChatRunFinishedData{SessionKey: "main", RunID: "run1", Status: moltgate.RunCompleted}, admin),
		moltgate.MustEvent(moltgate.StreamConfig, moltgate.EventConfigApplied, moltgate.ConfigAppliedData{Document: json.RawMessage(`{"a":2}`), Hash: "h2", BaseHash: "h1"}, admin),
		moltgate.MustEvent(moltgate.SessionStream("main"), moltgate.EventSessionReset, moltgate.SessionResetData{SessionKey: "main", NewSessionID: "s2"}, admin),
		moltgate.MustEvent(moltgate.SessionStream("other"), moltgate.EventChatMessageAdded, moltgate.ChatMessageAddedData{SessionKey: "other", Role: "user", Content: "x"}, admin),
	)
	r := projections.NewRunner(l, set.All()...)
	if n, err := r.RunToEnd(context.Background()); err != nil || n != 8 {
		t.Fatalf("RunToEnd = %d, %v", n, err)
	}
	doc, hash := set.Config.Current()
	if hash != "h2" || string(doc) != `{"a":2}` || len(set.Config.History()) != 2 || set.Config.History()[0].Actor != admin.Actor {
		t.Fatalf("config = %s %s %+v", doc, hash, set.Config.History())
	}
	main, ok := set.Sessions.Get("main")
	if !ok || main.ID != "s2" || main.MessageCount != 0 || main.TotalCount != 2 || main.LastRunState != moltgate.RunCompleted || main.ResetSeq != 7 {
		t.Fatalf("session main = %+v", main)
	}
	if list := set.Sessions.List(); len(list) != 2 || list[0].Key != "other" {
		t.Fatalf("sessions = %+v, want most recent first", list)
	}

	// The time machine: the same log up to seq 3.
	old := projections.NewSet()
	if _, err := projections.NewRunner(l, old.All()...).RunUntil(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if _, hash := old.Config.Current(); hash != "h1" {
		t.Fatalf("config at seq 3 = %s, want h1", hash)
	}
	if s, _ := old.Sessions.Get("main"); s.LastRunState != "running" || s.MessageCount != 1 {
		t.Fatalf("session at seq 3 = %+v", s)
	}
}

// A row whose payload is not JSON (inserted directly, around Append's
// checks) must be reported with its seq and type, without stopping the
// other projections or the events after it.
func TestRunner_CorruptPayload(t *testing.T) {
	l := MustOpenLog(t)
	mustAppend(t, l, moltgate.MustEvent(moltgate.StreamConfig, moltgate.EventConfigApplied, moltgate.ConfigAppliedData{Document: json.RawMessage(`{}`), Hash: "h1"}, admin))
	db, err := sql.Open("sqlite", eventlog.DSN(l.Path))
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`INSERT INTO events (id, stream, version, type, schema, data, meta, recorded_at) VALUES ('bad', 'device:x', 1, 'device.pairing.requested', 1, X'7b7b6e6f74206a736f6e', '{}', 0)`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The writer caches stream versions; a fresh log sees the row.
	l.Close(context.Background())
	l2 := eventlog.NewLog(l.Path)
	if err := l2.Open(); err != nil {
		t.Fatal(err)
	}
	defer l2.Close(context.Background())
	mustAppend(t, l2, moltgate.MustEvent(moltgate.StreamConfig, moltgate.EventConfigApplied, moltgate.ConfigAppliedData{Document: json.RawMessage(`{}`), Hash: "h2"}, admin))

	set := projections.NewSet()
	r := projections.NewRunner(l2, set.All()...)
	if n, err := r.RunToEnd(context.Background()); err != nil || n != 3 {
		t.Fatalf("RunToEnd = %d, %v", n, err)
	}
	errs := r.Errors()
	if len(errs) != 1 || errs[0].Seq != 2 || errs[0].Type != "device.pairing.requested" || errs[0].Projection != "devices" {
		t.Fatalf("errors = %+v, want one for seq 2 device.pairing.requested in devices", errs)
	}
	if !strings.Contains(errs[0].Error(), "seq 2") {
		t.Errorf("error text %q does not name the seq", errs[0].Error())
	}
	if _, hash := set.Config.Current(); hash != "h2" {
		t.Fatalf("config stopped at %s, want h2", hash)
	}
}

// countingProjection counts applied events and can be snapshotted.
type countingProjection struct {
	version int
	N       int64 `json:"n"`
	resets  int
}

func (c *countingProjection) Name() string                       { return "counting" }
func (c *countingProjection) Version() int                       { return c.version }
func (c *countingProjection) Apply(moltgate.Event) error         { c.N++; return nil }
func (c *countingProjection) Reset()                             { c.N = 0; c.resets++ }
func (c *countingProjection) Snapshot() (json.RawMessage, error) { return json.Marshal(c) }
func (c *countingProjection) LoadSnapshot(b json.RawMessage) error {
	return json.Unmarshal(b, c)
}

func TestRunner_Snapshots(t *testing.T) {
	l := MustOpenLog(t)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		mustAppend(t, l, moltgate.MustEvent("s", "t.x", struct{}{}, admin))
	}
	dir := t.TempDir()
	run := func(version int) (*countingProjection, int64) {
		p := &countingProjection{version: version}
		r := projections.NewRunner(l, p)
		r.SnapshotDir = dir
		n, err := r.RunToEnd(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		return p, n
	}
	if p, n := run(1); p.N != 10 || n != 10 {
		t.Fatalf("first run: N=%d replayed %d", p.N, n)
	}
	mustAppend(t, l, moltgate.MustEvent("s", "t.x", struct{}{}, admin))
	if p, n := run(1); p.N != 11 || n != 1 {
		t.Fatalf("same version: N=%d replayed %d, want 11 from the snapshot plus 1", p.N, n)
	}
	if p, n := run(2); p.N != 11 || n != 11 {
		t.Fatalf("new version: N=%d replayed %d, want a rebuild of all 11", p.N, n)
	}
}

func TestWorkspace(t *testing.T) {
	l := MustOpenLog(t)
	write := func(path, content string) moltgate.Event {
		return moltgate.MustEvent(moltgate.StreamWorkspace, moltgate.EventWorkspaceFileWritten, moltgate.WorkspaceFileData{Path: path, Content: content}, admin)
	}
	stored := mustAppend(t, l, write("SOUL.md", "soul"), write("USER.md", "user"), write("SOUL.md", "soul 2"),
		moltgate.MustEvent(moltgate.StreamWorkspace, moltgate.EventWorkspaceFileDeleted, moltgate.WorkspaceFileData{Path: "USER.md"}, admin))
	w := projections.NewWorkspace()
	if _, err := projections.NewRunner(l, w).RunToEnd(context.Background()); err != nil {
		t.Fatal(err)
	}
	check := func(w *projections.Workspace) {
		t.Helper()
		if c, ok := w.File("SOUL.md"); !ok || c != "soul 2" || w.Count() != 1 {
			t.Fatalf("files = %+v", w.WorkspaceFiles())
		}
		if _, ok := w.File("USER.md"); ok {
			t.Fatal("a deleted file is listed")
		}
		if v := w.StreamVersion(); v != 4 {
			t.Fatalf("stream version %d, want 4", v)
		}
		if at, ok := w.Changed("USER.md"); !ok || !at.Equal(stored[3].RecordedAt) {
			t.Fatalf("USER.md changed at %v %v, want its deletion", at, ok)
		}
		if _, ok := w.Changed("AGENTS.md"); ok {
			t.Fatal("a path the log never had has a change time")
		}
	}
	check(w)
	snap, err := w.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	loaded := projections.NewWorkspace()
	if err := loaded.LoadSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	check(loaded)
}

// Numbers are compared as written: two Discord ids that a float64 would
// make equal are a change.
func TestDiffJSON_LongNumbers(t *testing.T) {
	changes := projections.DiffJSON(json.RawMessage(`{"channels":{"discord":{"dm":{"allowFrom":[123456789012345678]}}}}`),
		json.RawMessage(`{"channels":{"discord":{"dm":{"allowFrom":[123456789012345679]}}}}`))
	want := moltgate.ConfigChange{Path: "channels.discord.dm.allowFrom[0]", Op: "changed", From: "123456789012345678", To: "123456789012345679"}
	if len(changes) != 1 || changes[0] != want {
		t.Fatalf("changes = %+v, want %+v", changes, want)
	}
}

func TestHistory_DiffConfig(t *testing.T) {
	l := MustOpenLog(t)
	ctx := context.Background()
	sealed := func(s string) string { return moltgate.SealedPrefix + "0123abcd:" + s }
	stored := mustAppend(t, l,
		moltgate.MustEvent(moltgate.StreamConfig, moltgate.EventConfigApplied, moltgate.ConfigAppliedData{
			Document: json.RawMessage(`{"a":1,"key":"` + sealed("AAAA") + `","gone":true}`), Hash: "h1"}, admin),
		moltgate.MustEvent(moltgate.SessionStream("main"), moltgate.EventSessionReset, moltgate.SessionResetData{SessionKey: "main"}, admin),
		moltgate.MustEvent(moltgate.StreamConfig, moltgate.EventConfigApplied, moltgate.ConfigAppliedData{
			Document: json.RawMessage(`{"a":2,"key":"` + sealed("BBBB") + `","token":"` + sealed("CCCC") + `"}`), Hash: "h2"}, admin))
	h := &projections.History{Log: l}
	marker := strconv.Quote(moltgate.RedactedMarker)
	want := []moltgate.ConfigChange{
		{Path: "a", Op: "changed", From: "1", To: "2"},
		{Path: "gone", Op: "removed", From: "true"},
		{Path: "key", Op: "changed", From: marker, To: marker},
		{Path: "token", Op: "added", To: marker},
	}
	for _, to := range []int64{stored[2].Seq, 0} { // 0: the current document
		changes, err := h.DiffConfig(ctx, stored[0].Seq, to)
		if err != nil || fmt.Sprint(changes) != fmt.Sprint(want) {
			t.Fatalf("DiffConfig(%d, %d) = %+v %v, want %+v", stored[0].Seq, to, changes, err, want)
		}
	}
	if _, err := h.DiffConfig(ctx, stored[1].Seq, 0); moltgate.ErrorCode(err) != moltgate.ENOTFOUND {
		t.Fatalf("DiffConfig from a session event = %v", err)
	}
	doc, err := h.ConfigAt(ctx, stored[0].Seq)
	if err != nil || strings.Contains(string(doc), moltgate.SealedPrefix) {
		t.Fatalf("ConfigAt = %s %v, want sealed values redacted", doc, err)
	}
}

// An event whose payload does not decode still took its place in its
// stream: the version a writer appends after counts it, or every later
// write to the stream would conflict.
func TestStreamVersions_CountUndecodableEvents(t *testing.T) {
	l := MustOpenLog(t)
	mustAppend(t, l, moltgate.MustEvent(moltgate.StreamConfig, moltgate.EventConfigApplied, moltgate.ConfigAppliedData{Document: json.RawMessage(`{}`), Hash: "h1"}, admin))
	db, err := sql.Open("sqlite", eventlog.DSN(l.Path))
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`INSERT INTO events (id, stream, version, type, schema, data, meta, recorded_at) VALUES
		('bad-config', 'config', 2, 'config.applied', 1, X'7b7b', '{}', 0),
		('bad-channel', 'channel:telegram', 1, 'channel.allowlist.changed', 1, X'7b7b', '{}', 0)`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The log learns its last seq at open.
	l.Close(context.Background())
	l2 := eventlog.NewLog(l.Path)
	if err := l2.Open(); err != nil {
		t.Fatal(err)
	}
	defer l2.Close(context.Background())
	set := projections.NewSet()
	r := projections.NewRunner(l2, set.All()...)
	if _, err := r.RunToEnd(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(r.Errors()) != 2 {
		t.Fatalf("errors = %+v, want the two bad payloads", r.Errors())
	}
	if _, hash, v := set.Config.CurrentVersion(); v != 2 || hash != "h1" {
		t.Fatalf("config version %d (hash %s), want 2 with h1 still current", v, hash)
	}
	if v := set.Channels.StreamVersion("telegram"); v != 1 {
		t.Fatalf("telegram stream version %d, want 1", v)
	}
}
