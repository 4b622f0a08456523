// Package benchdata builds the large event logs that benchmarks replay: a
// realistic mix in which chat messages dominate, as they do in a real log.
package benchdata

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
)

// fixtureVersion changes whenever Generate's output or the log's schema
// changes, so that cached fixtures are rebuilt (2: no recorded_at index;
// 3: each run starts and finishes in one session).
const fixtureVersion = 3

// Fixture returns the path of a log with n events, generating it once per
// machine under the temp directory (generation takes a while; reading it
// does not change it). Benchmarks that write must Copy it first.
func Fixture(tb testing.TB, n int) string {
	tb.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("moltgate-bench-v%d-%d.db", fixtureVersion, n))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	tmp := path + ".building"
	os.Remove(tmp)
	if err := Generate(tmp, n); err != nil {
		tb.Fatal(err)
	}
	// The rename moves the file alone: it must hold every event itself.
	// SQLite checkpoints as the last connection closes, but skips that
	// without a word while anything else has the file open.
	if err := checkpoint(tmp); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	return path
}

// checkpoint copies the whole WAL of the log at path into the file and
// empties it.
func checkpoint(path string) error {
	db, err := sql.Open("sqlite", eventlog.DSN(path))
	if err != nil {
		return err
	}
	var busy, frames, copied int64
	err = db.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &copied)
	if err == nil && busy != 0 {
		err = fmt.Errorf("cannot checkpoint %s: %d of %d frames copied, a reader holds the rest", path, copied, frames)
	}
	return errors.Join(err, db.Close())
}

// Copy copies the log at src to dst.
func Copy(tb testing.TB, src, dst string) {
	tb.Helper()
	in, err := os.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		tb.Fatal(err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
}

// Generate writes a log of n events: per 100, 90 chat messages over 1,000
// sessions, 8 run starts and ends, one device pairing event and one config
// or allowlist change.
func Generate(path string, n int) error {
	l := eventlog.NewLog(path)
	if err := l.Open(); err != nil {
		return err
	}
	err := appendEvents(l, n)
	return errors.Join(err, l.Close(context.Background()))
}

// appendEvents appends Generate's events, a thousand a commit.
func appendEvents(l *eventlog.Log, n int) error {
	meta := moltgate.Meta{Actor: "owner@example.com", Source: moltgate.SourceWS}
	const batch = 1000
	events := make([]moltgate.Event, 0, batch)
	for i := 0; i < n; i++ {
		events = append(events, eventAt(i, meta))
		if len(events) == batch || i == n-1 {
			if _, err := l.Append(context.Background(), events...); err != nil {
				return err
			}
			events = events[:0]
		}
	}
	return nil
}

func eventAt(i int, meta moltgate.Meta) moltgate.Event {
	session := fmt.Sprintf("s%04d", i%1000)
	// Runs 90-93 of each hundred start and 94-97 finish, in pairs in the
	// same session, as a gateway records them: a log with runs left open
	// would make every start close them as interrupted.
	k := i % 100
	if k >= 90 && k < 98 {
		nth := (k - 90) % 4
		session = fmt.Sprintf("s%04d", (i/100*4+nth)%1000)
		run := fmt.Sprintf("run-%d-%d", i/100, nth)
		if k < 94 {
			return moltgate.MustEvent(moltgate.SessionStream(session), moltgate.EventChatRunStarted, moltgate.ChatRunStartedData{SessionKey: session, RunID: run, Model: "anthropic/claude-sonnet-4"}, meta)
		}
		return moltgate.MustEvent(moltgate.SessionStream(session), moltgate.EventChatRunFinished, moltgate.ChatRunFinishedData{SessionKey: session, RunID: run, Status: moltgate.RunCompleted}, meta)
	}
	run := fmt.Sprintf("run-%d-0", i/100)
	switch {
	case k < 90:
		role := "user"
		if k%2 == 1 {
			role = "assistant"
		}
		return moltgate.MustEvent(moltgate.SessionStream(session), moltgate.EventChatMessageAdded, moltgate.ChatMessageAddedData{
			SessionKey: session, MessageID: fmt.Sprintf("m%d", i), Role: role, RunID: run,
			Content: "Sure — I have added milk and eggs to the shopping list, and I will remind you about the plants at eight tomorrow morning.",
		}, meta)
	case k == 98:
		dev := fmt.Sprintf("dev%d", i/200)
		if (i/100)%2 == 0 {
			return moltgate.MustEvent(moltgate.DeviceStream(dev), moltgate.EventDevicePairingRequested, moltgate.DevicePairingRequestedData{
				RequestID: "req-" + dev, DeviceID: dev, Role: "operator", Scopes: []string{"operator.read", "operator.write"},
				Platform: "linux", ExpiresAtMs: time.Now().Add(5 * time.Minute).UnixMilli()}, meta)
		}
		return moltgate.MustEvent(moltgate.DeviceStream(dev), moltgate.EventDevicePairingApproved, moltgate.DevicePairingApprovedData{
			RequestID: "req-" + dev, DeviceID: dev, Role: "operator", Scopes: []string{"operator.read", "operator.write"}, TokenHash: "0f3c…"}, meta)
	default:
		if (i/100)%2 == 0 {
			return moltgate.MustEvent(moltgate.StreamConfig, moltgate.EventConfigApplied, moltgate.ConfigAppliedData{
				Document: json.RawMessage(fmt.Sprintf(`{"agents":{"defaults":{"model":{"primary":"anthropic/claude-sonnet-4"}}},"rev":%d}`, i)), Hash: fmt.Sprint("h", i)}, meta)
		}
		return moltgate.MustEvent(moltgate.ChannelStream("telegram"), moltgate.EventChannelAllowlistChanged, moltgate.ChannelAllowlistChangedData{Channel: "telegram", Added: []string{fmt.Sprint(i)}}, meta)
	}
}
