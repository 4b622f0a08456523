package moltgate_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"testing"

	moltgate "github.com/moltgate/moltgate"
)

func TestNewID(t *testing.T) {
	uuidv7 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	prev := ""
	for i := 0; i < 1000; i++ {
		id := moltgate.NewID()
		if !uuidv7.MatchString(id) {
			t.Fatalf("%q is not a UUIDv7", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
		// The time prefix never goes backwards.
		if prev != "" && id[:13] < prev[:13] {
			t.Fatalf("id %s sorts before %s", id, prev)
		}
		prev = id
	}
}

func TestUpcast(t *testing.T) {
	old := moltgate.Event{Seq: 9, Type: moltgate.EventChatMessageAdded, Schema: 1, Data: json.RawMessage(`{"role":"user","text":"hi"}`)}
	got, err := moltgate.Upcast(old)
	if err != nil {
		t.Fatal(err)
	}
	var msg moltgate.ChatMessageAddedData
	if err := got.Decode(&msg); err != nil || got.Schema != 2 || msg.Content != "hi" {
		t.Fatalf("upcast = %+v %+v %v", got, msg, err)
	}
	unknown := moltgate.Event{Type: "from.the.future", Schema: 3, Data: json.RawMessage(`{"x":1}`)}
	if got, err := moltgate.Upcast(unknown); err != nil || string(got.Data) != `{"x":1}` || got.Schema != 3 {
		t.Fatalf("unknown type changed: %+v %v", got, err)
	}
	broken := moltgate.Event{Seq: 4, Type: moltgate.EventChatMessageAdded, Schema: 1, Data: json.RawMessage(`[`)}
	if _, err := moltgate.Upcast(broken); err == nil {
		t.Fatal("a broken schema 1 payload upcast without error")
	}
}

func TestErrors(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", moltgate.Errorf(moltgate.ENOTFOUND, "no device %s", "d1"))
	if moltgate.ErrorCode(err) != moltgate.ENOTFOUND || moltgate.ErrorMessage(err) != "no device d1" {
		t.Fatalf("code %q message %q", moltgate.ErrorCode(err), moltgate.ErrorMessage(err))
	}
	internal := errors.New("disk I/O error at /secret/path")
	if moltgate.ErrorCode(internal) != moltgate.EINTERNAL || moltgate.ErrorMessage(internal) != "internal error" {
		t.Fatal("an internal error's text would reach a client")
	}
	if moltgate.ErrorCode(nil) != "" {
		t.Fatal("nil has a code")
	}
}

func TestSessionStream(t *testing.T) {
	if key, ok := moltgate.SessionKeyFromStream(moltgate.SessionStream("main")); !ok || key != "main" {
		t.Fatalf("round trip = %q %v", key, ok)
	}
	if _, ok := moltgate.SessionKeyFromStream("device:x"); ok {
		t.Fatal("device stream taken for a session")
	}
}

func TestDecodeJSON(t *testing.T) {
	var v any
	if err := moltgate.DecodeJSON([]byte(` {"id":123456789012345678} `+"\n"), &v); err != nil {
		t.Fatal(err)
	}
	if id := v.(map[string]any)["id"]; id != json.Number("123456789012345678") {
		t.Fatalf("id = %#v, want the number as written", id)
	}
	for _, bad := range []string{`{"b":2} {"c":3}`, `{"b":2} x`, `{"b":2}}`, `{"b":2}]`, `{"b":`, ``} {
		if err := moltgate.DecodeJSON([]byte(bad), &v); err == nil {
			t.Errorf("DecodeJSON(%q) accepted it", bad)
		}
	}
}
