package eventlog

import (
	"bytes"
	"encoding/json"
	"strconv"

	moltgate "github.com/moltgate/moltgate"
)

// decodeMeta reads the meta column. Meta is a flat object of strings that
// this package wrote itself, and decoding it with encoding/json was a third
// of a full replay, so the common shape is read by hand; anything else
// falls back to encoding/json.
func decodeMeta(b []byte, m *moltgate.Meta) error {
	b = bytes.TrimSpace(b)
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return json.Unmarshal(b, m)
	}
	rest := b[1 : len(b)-1]
	for len(bytes.TrimSpace(rest)) > 0 {
		key, after, ok := readString(bytes.TrimLeft(rest, " \t\r\n,"))
		if !ok {
			return json.Unmarshal(b, m)
		}
		after = bytes.TrimLeft(after, " \t\r\n")
		if len(after) == 0 || after[0] != ':' {
			return json.Unmarshal(b, m)
		}
		val, after, ok := readString(bytes.TrimLeft(after[1:], " \t\r\n"))
		if !ok {
			return json.Unmarshal(b, m)
		}
		switch key {
		case "actor":
			m.Actor = val
		case "source":
			m.Source = val
		case "remoteIp":
			m.RemoteIP = val
		case "correlationId":
			m.CorrelationID = val
		case "causationId":
			m.CausationID = val
		}
		rest = bytes.TrimLeft(after, " \t\r\n")
		if len(rest) > 0 {
			if rest[0] != ',' {
				return json.Unmarshal(b, m)
			}
			rest = rest[1:]
		}
	}
	return nil
}

// readString reads a JSON string at the start of b.
func readString(b []byte) (s string, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", nil, false
	}
	escaped := false
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			if !escaped {
				return string(b[1:i]), b[i+1:], true
			}
			v, err := strconv.Unquote(string(b[:i+1]))
			if err != nil {
				return "", nil, false
			}
			return v, b[i+1:], true
		}
	}
	return "", nil, false
}
