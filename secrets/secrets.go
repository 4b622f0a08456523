// Package secrets seals the secrets in moltgate's config before they are
// appended to the event log, and opens them where they are used.
//
// OpenClaw clients send provider keys and bot tokens in plaintext
// (config.apply with an apiKey, "my Discord token is …" to the agent).
// The config is an event, and events reach the replica in R2, so every
// value on a sensitive path is encrypted (XChaCha20-Poly1305) with a key
// that never reaches the replica: MOLTGATE_SECRET_KEY, or on a laptop a
// key file beside gateway-token. The ciphertext is bound to the config
// path it was sealed for, so a sealed key copied into another provider's
// entry (one whose baseUrl points elsewhere) does not open.
package secrets

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	moltgate "github.com/moltgate/moltgate"
	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the size of a sealing key.
const KeySize = chacha20poly1305.KeySize

// Sealer seals and opens config secrets with one key.
type Sealer struct {
	key []byte
	id  string
}

// NewSealer returns a sealer for a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("a sealing key has %d bytes, not %d", KeySize, len(key))
	}
	sum := sha256.Sum256(append([]byte("moltgate key id\x00"), key...))
	return &Sealer{key: append([]byte(nil), key...), id: hex.EncodeToString(sum[:4])}, nil
}

// KeyID names the key without revealing it: sealed values carry it, so a
// value sealed with another key is recognised as such.
func (s *Sealer) KeyID() string { return s.id }

// ParseKey reads MOLTGATE_SECRET_KEY: 32 bytes as 64 hex digits or
// base64 (what `openssl rand -hex 32` or `-base64 32` print). Nothing else
// is accepted: a key derived from a passphrase could be guessed offline by
// whoever reads the replica, which holds values sealed with it.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == KeySize {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == KeySize {
			return b, nil
		}
	}
	return nil, errors.New("MOLTGATE_SECRET_KEY must be 32 random bytes written as 64 hex digits or in base64, not a passphrase: use the output of `openssl rand -hex 32`")
}

// LoadOrCreateKeyFile reads the key kept at path, or creates one (mode
// 0600) when the file does not exist. The file lives beside the event log
// but is never part of it, so the replica cannot open what it holds.
func LoadOrCreateKeyFile(path string) (key []byte, created bool, err error) {
	if key, err := readKeyFile(path); !errors.Is(err, os.ErrNotExist) {
		return key, false, err
	}
	key = make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("cannot keep the sealing key: %w", err)
	}
	// The key is written whole to a temporary file (mode 0600), then
	// linked to its name: a process starting at the same moment finds no
	// file or the whole key, never an empty one, and the first link wins;
	// the others read the winner's key.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secret-key-*")
	if err != nil {
		return nil, false, fmt.Errorf("cannot keep the sealing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), path)
	}
	switch {
	case errors.Is(err, os.ErrExist):
		key, err := readKeyFile(path)
		return key, false, err
	case err != nil:
		return nil, false, fmt.Errorf("cannot keep the sealing key: %w", err)
	}
	return key, true, nil
}

// readKeyFile reads the key kept at path.
func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the sealing key: %w", err)
	}
	key, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("cannot read the sealing key in %s: %w", path, err)
	}
	return key, nil
}

// Seal encrypts plaintext for the config path it is stored at.
func (s *Sealer) Seal(path, plaintext string) string {
	aead, _ := chacha20poly1305.NewX(s.key)
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	_, _ = rand.Read(nonce)
	out := aead.Seal(nonce, nonce, []byte(plaintext), []byte(path))
	return moltgate.SealedPrefix + s.id + ":" + base64.RawURLEncoding.EncodeToString(out)
}

// ErrOtherKey is returned for a value sealed with another key: typically a
// log restored on a machine that was not given MOLTGATE_SECRET_KEY.
var ErrOtherKey = errors.New("sealed with another key")

// Open decrypts a value sealed for path.
func (s *Sealer) Open(path, sealed string) (string, error) {
	if !moltgate.IsSealed(sealed) {
		return "", errors.New("not a sealed value")
	}
	id := moltgate.SealedKeyID(sealed)
	if id != s.id {
		return "", fmt.Errorf("%w (key %s; this gateway's key is %s): set MOLTGATE_SECRET_KEY to the key it was sealed with, or enter the secret again", ErrOtherKey, id, s.id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(sealed, moltgate.SealedPrefix+id+":"))
	aead, _ := chacha20poly1305.NewX(s.key)
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return "", errors.New("the sealed value is damaged")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(path))
	if err != nil {
		return "", fmt.Errorf("the sealed value does not open for %s: it was sealed for another field, or is damaged", path)
	}
	return string(plain), nil
}

// SealDocument returns doc with every plaintext secret sealed, in canonical
// form (compact, keys sorted). stored is
// the document it replaces (nil when none): RedactedMarker at a path keeps
// the value stored there, and a plaintext equal to the stored secret keeps
// the stored ciphertext, so applying the same document twice changes
// nothing. "${NAME}" references are kept as they are. A marker with
// nothing stored under it is an issue: the caller must send the value.
func (s *Sealer) SealDocument(doc, stored json.RawMessage) (json.RawMessage, []moltgate.ConfigIssue) {
	var v, old any
	if err := moltgate.DecodeJSON(doc, &v); err != nil {
		return nil, []moltgate.ConfigIssue{{Path: "$", Message: "not valid JSON: " + err.Error()}}
	}
	if len(stored) > 0 {
		_ = moltgate.DecodeJSON(stored, &old)
	}
	var issues []moltgate.ConfigIssue
	v = moltgate.MapStrings(v, func(path []string, value string) string {
		p := moltgate.PathString(path)
		prev, hasPrev := lookup(old, path)
		switch {
		case value == moltgate.RedactedMarker:
			if !hasPrev || prev == moltgate.RedactedMarker {
				issues = append(issues, moltgate.ConfigIssue{Path: p, Message: moltgate.RedactedMarker + " stands for a stored secret, but none is stored here: send the value itself"})
				return value
			}
			return prev
		case moltgate.IsSealed(value), len(moltgate.EnvRefs(value)) > 0, !moltgate.IsSensitive(path, value):
			return value
		case hasPrev && moltgate.IsSealed(prev):
			if plain, err := s.Open(p, prev); err == nil && plain == value {
				return prev
			}
		}
		return s.Seal(p, value)
	})
	if len(issues) > 0 {
		return nil, issues
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, []moltgate.ConfigIssue{{Path: "$", Message: err.Error()}}
	}
	return out, nil
}

// Unopenable lists the sealed values of doc that this sealer cannot open,
// each with the reason: what a gateway restored without its key reports.
func (s *Sealer) Unopenable(doc json.RawMessage) []moltgate.ConfigIssue {
	var v any
	if json.Unmarshal(doc, &v) != nil {
		return nil
	}
	var out []moltgate.ConfigIssue
	moltgate.MapStrings(v, func(path []string, value string) string {
		if moltgate.IsSealed(value) {
			p := moltgate.PathString(path)
			if _, err := s.Open(p, value); err != nil {
				out = append(out, moltgate.ConfigIssue{Path: p, Message: err.Error()})
			}
		}
		return value
	})
	moltgate.SortIssues(out)
	return out
}

// lookup finds the string at path in a decoded document.
func lookup(v any, path []string) (string, bool) {
	for _, k := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(x) {
				return "", false
			}
			v = x[i]
		default:
			return "", false
		}
	}
	s, ok := v.(string)
	return s, ok
}

// SealText seals every credential-looking word of a text (a chat message
// with "my Discord token is …") in place, for path: the log keeps the
// sentence, not the token.
func (s *Sealer) SealText(path, text string) string {
	spans := moltgate.FindCredentials(text)
	for i := len(spans) - 1; i >= 0; i-- {
		sp := spans[i]
		text = text[:sp[0]] + s.Seal(path, text[sp[0]:sp[1]]) + text[sp[1]:]
	}
	return text
}

// OpenText opens the sealed values embedded in a text sealed for path;
// one that does not open shows as the redaction marker.
func (s *Sealer) OpenText(path, text string) string {
	spans := moltgate.SealedSpans(text)
	for i := len(spans) - 1; i >= 0; i-- {
		sp := spans[i]
		plain, err := s.Open(path, text[sp[0]:sp[1]])
		if err != nil {
			plain = moltgate.RedactedMarker
		}
		text = text[:sp[0]] + plain + text[sp[1]:]
	}
	return text
}

// Resolver opens sealed values and expands "${NAME}" references: the one
// place config values become the secrets they stand for.
type Resolver struct {
	Sealer *Sealer
	Getenv func(string) string
}

// OpenText implements moltgate.SecretResolver.
func (r Resolver) OpenText(path, text string) string {
	if r.Sealer == nil {
		return moltgate.RedactText(text)
	}
	return r.Sealer.OpenText(path, text)
}

// Resolve returns what the value at path stands for.
func (r Resolver) Resolve(path, value string) (string, error) {
	switch {
	case moltgate.IsSealed(value):
		if r.Sealer == nil {
			return "", fmt.Errorf("%s is sealed and this process has no sealing key", path)
		}
		return r.Sealer.Open(path, value)
	case len(moltgate.EnvRefs(value)) > 0:
		getenv := r.Getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		return moltgate.ExpandEnv(value, getenv)
	}
	return value, nil
}
