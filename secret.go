package moltgate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// RedactedMarker is what every read shows in place of a secret: OpenClaw's
// own marker, so its Control UI and CLI recognise it. A document applied
// with the marker at a path keeps the value stored there.
const RedactedMarker = "__OPENCLAW_REDACTED__"

// SealedPrefix starts a sealed value: "moltgate:sealed:v1:<key id>:<data>".
// Sealed values are encrypted with a key that never reaches the replica
// (the secrets package does the cryptography); the key id says which key
// can open them.
const SealedPrefix = "moltgate:sealed:v1:"

// IsSealed reports whether s is a sealed value.
func IsSealed(s string) bool { return strings.HasPrefix(s, SealedPrefix) }

// SealedKeyID returns the id of the key that sealed s ("" when s is not sealed).
func SealedKeyID(s string) string {
	rest, ok := strings.CutPrefix(s, SealedPrefix)
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, ":")
	return id
}

// SecretResolver turns the config value at path (as PathString writes it)
// into what it stands for: a sealed value is opened, "${NAME}" references
// are read from the environment, anything else is returned as it is.
type SecretResolver interface {
	Resolve(path, value string) (string, error)
	// OpenText opens the sealed credentials embedded in a text sealed for
	// path (a chat message); one that cannot be opened shows as
	// RedactedMarker.
	OpenText(path, text string) string
}

// sealedPattern finds sealed values, whole or embedded in a text.
var sealedPattern = regexp.MustCompile(`moltgate:sealed:v1:[0-9a-f]{8}:[A-Za-z0-9_-]+`)

// RedactText replaces every sealed value in s with RedactedMarker.
func RedactText(s string) string {
	if !strings.Contains(s, SealedPrefix) {
		return s
	}
	return sealedPattern.ReplaceAllString(s, RedactedMarker)
}

// SealedSpans returns the byte ranges of the sealed values in s.
func SealedSpans(s string) [][]int { return sealedPattern.FindAllStringIndex(s, -1) }

// credentialPatterns recognise credentials people paste into a chat ("my
// Discord token is …"): provider keys, bot tokens, access tokens. Each
// names the text a match must contain, so that most words are passed over
// with a substring search instead of ten regexp runs (a 4 KB reply of
// long numbers cost 0.5 ms of CPU before).
var credentialPatterns = []struct {
	needs []string // a match contains one of these
	re    *regexp.Regexp
}{
	{[]string{"sk-"}, regexp.MustCompile(`\bsk-[A-Za-z0-9_-]{16,}`)},                                                   // OpenAI, Anthropic (sk-ant-…), OpenRouter (sk-or-…), DeepSeek
	{[]string{"xox"}, regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}`)},                                           // Slack bot and user tokens
	{[]string{"xapp-"}, regexp.MustCompile(`\bxapp-[A-Za-z0-9-]{10,}`)},                                                // Slack app-level tokens
	{[]string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"}, regexp.MustCompile(`\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}`)}, // GitHub tokens
	{[]string{"github_pat_"}, regexp.MustCompile(`\bgithub_pat_[A-Za-z0-9_]{30,}`)},                                    // GitHub fine-grained tokens
	{[]string{"glpat-"}, regexp.MustCompile(`\bglpat-[A-Za-z0-9_-]{20,}`)},                                             // GitLab
	{[]string{"AKIA"}, regexp.MustCompile(`\bAKIA[0-9A-Z]{16}\b`)},                                                     // AWS access key ids
	{[]string{":"}, regexp.MustCompile(`\b(?:bot)?[0-9]{6,12}:[A-Za-z0-9_-]{30,}`)},                                    // Telegram bot tokens, also in an API path (/bot<token>/getMe)
	{[]string{"."}, regexp.MustCompile(`\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}`)},              // Discord bot tokens
	{[]string{"eyJ"}, regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`)},           // JWTs
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// FindCredentials returns the byte ranges of credential-looking words in
// text, in order and without overlaps. Credentials are long runs of
// [A-Za-z0-9_.:-]: only such runs are matched against the patterns, which
// keeps a long message cheap (most words are short).
func FindCredentials(text string) [][]int {
	var spans [][]int
	for start := 0; start < len(text); {
		if !tokenByte(text[start]) {
			start++
			continue
		}
		end := start
		for end < len(text) && tokenByte(text[end]) {
			end++
		}
		if n := end - start; n >= 16 && n <= maxCredentialLen {
			run := text[start:end]
			for _, p := range credentialPatterns {
				if !containsAny(run, p.needs) {
					continue
				}
				for _, sp := range p.re.FindAllStringIndex(run, -1) {
					spans = append(spans, []int{start + sp[0], start + sp[1]})
				}
			}
		}
		start = end
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i][0] < spans[j][0] })
	var out [][]int
	for _, sp := range spans {
		if len(out) > 0 && sp[0] < out[len(out)-1][1] {
			if sp[1] > out[len(out)-1][1] {
				out[len(out)-1][1] = sp[1]
			}
			continue
		}
		out = append(out, sp)
	}
	return out
}

var envRefPattern = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// EnvRefs returns the names of the variables s references as ${NAME}.
func EnvRefs(s string) []string {
	var out []string
	for _, m := range envRefPattern.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// ProtectedEnvVar reports whether name is one of moltgate's own secrets or
// settings, which config references may never read: otherwise an admin
// client could point a provider's baseUrl at its own server, set its
// apiKey to "${MOLTBOT_GATEWAY_TOKEN}" and receive the token with a chat.
func ProtectedEnvVar(name string) bool {
	n := strings.ToUpper(name)
	switch n {
	case "MOLTBOT_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_TOKEN", "CDP_SECRET":
		return true
	}
	for _, p := range []string{"R2_", "CF_ACCESS_", "MOLTGATE_", "AWS_"} {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}

// MissingEnvError is a reference to a variable that is not set.
type MissingEnvError struct{ Name string }

func (e *MissingEnvError) Error() string {
	return fmt.Sprintf("the environment variable %s is not set", e.Name)
}

// ExpandEnv replaces every ${NAME} in s with the variable's value. A
// protected variable is refused and an unset one is a *MissingEnvError.
func ExpandEnv(s string, getenv func(string) string) (string, error) {
	var err error
	out := envRefPattern.ReplaceAllStringFunc(s, func(ref string) string {
		name := ref[2 : len(ref)-1]
		if err != nil {
			return ""
		}
		if ProtectedEnvVar(name) {
			err = Errorf(EFORBIDDEN, "${%s} is one of moltgate's own secrets and cannot be used in the config", name)
			return ""
		}
		v := getenv(name)
		if v == "" {
			err = &MissingEnvError{Name: name}
		}
		return v
	})
	if err != nil {
		return "", err
	}
	return out, nil
}

// sensitiveKeys match config keys that hold credentials: OpenClaw's own
// patterns (token$, password, secret, api.?key) and a few more that are
// credentials wherever they appear.
var sensitiveKeys = regexp.MustCompile(`(?i)(token$|password|passwd|secret|api.?key|authorization|cookie|private.?key|credential|access.?key)`)

// sensitiveContainers are keys whose every string value is a secret:
// HTTP headers carry credentials, and env blocks (env.vars.*, env.*,
// skills.entries.*.env.*) exist to hold provider keys.
var sensitiveContainers = map[string]bool{"headers": true, "env": true, "vars": true}

// credentialPrefixes are how well-known credentials begin; such a value is
// sealed wherever it appears, whatever its key is called.
var credentialPrefixes = []string{"sk-", "xoxb-", "xoxp-", "xapp-", "xoxa-", "ghp_", "gho_", "github_pat_", "glpat-", "AKIA", "Bearer ", "bearer "}

// IsSensitive reports whether the string value at path (keys from the
// root; list indexes as their decimal text) is a secret: by its key, by a
// container it sits in, or by its own shape (a URL with a password, a
// well-known credential prefix).
func IsSensitive(path []string, value string) bool {
	for i, k := range path {
		if sensitiveContainers[k] && i < len(path)-1 {
			return true
		}
	}
	if len(path) > 0 && sensitiveKeys.MatchString(path[len(path)-1]) {
		return true
	}
	if u, err := url.Parse(value); err == nil && u.User != nil {
		if _, hasPassword := u.User.Password(); hasPassword {
			return true
		}
	}
	for _, p := range credentialPrefixes {
		if strings.HasPrefix(value, p) && len(value) >= len(p)+8 {
			return true
		}
	}
	return false
}

// MapStrings calls fn for every string in a decoded JSON value (from
// json.Unmarshal into any), with its path, and replaces the string with
// what fn returns. It returns the new value; v is changed in place.
func MapStrings(v any, fn func(path []string, s string) string) any {
	return mapStrings(nil, v, fn)
}

func mapStrings(path []string, v any, fn func([]string, string) string) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = mapStrings(append(path[:len(path):len(path)], k), x, fn)
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = mapStrings(append(path[:len(path):len(path)], strconv.Itoa(i)), x, fn)
		}
		return v
	case string:
		return fn(path, v)
	}
	return v
}

// PathString writes a path as people read it: models.providers.x.models[0].id.
func PathString(path []string) string {
	var b strings.Builder
	for i, p := range path {
		if _, err := strconv.Atoi(p); err == nil && i > 0 {
			b.WriteString("[" + p + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// RedactSealed replaces every sealed value in a JSON document with
// RedactedMarker. Documents without one are returned as they are.
func RedactSealed(doc json.RawMessage) json.RawMessage {
	if !bytes.Contains(doc, []byte(SealedPrefix)) {
		return doc
	}
	var v any
	if json.Unmarshal(doc, &v) != nil {
		return doc
	}
	v = MapStrings(v, func(_ []string, s string) string { return RedactText(s) })
	out, err := json.Marshal(v)
	if err != nil {
		return doc
	}
	return out
}

// maxCredentialLen bounds the runs FindCredentials looks into: a longer
// run (a base64 blob, a minified file) is data, not a pasted token.
const maxCredentialLen = 4096

func tokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':'
}

// RedactSensitive returns a JSON document (a tool call's arguments) with
// every secret shown as RedactedMarker: sealed values, values at
// sensitive paths, and credential-looking words in any text.
func RedactSensitive(doc json.RawMessage) json.RawMessage {
	var v any
	if len(doc) == 0 || json.Unmarshal(doc, &v) != nil {
		return doc
	}
	v = MapStrings(v, func(path []string, s string) string {
		if IsSensitive(path, s) && len(EnvRefs(s)) == 0 {
			return RedactedMarker
		}
		return RedactCredentials(s)
	})
	out, err := json.Marshal(v)
	if err != nil {
		return doc
	}
	return out
}

// urlPassword matches the password of a URL written in a text
// ("https://bob:pass@host/"): the scheme and user stay, the password goes.
var urlPassword = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://[^\s/@:]*:)[^\s/@]+@`)

// RedactCredentials hides what looks like a credential in a text meant
// for people (a tool's summary or error, a value in a document): words
// FindCredentials recognises, URL passwords and sealed values all show
// as RedactedMarker.
func RedactCredentials(s string) string {
	spans := FindCredentials(s)
	for i := len(spans) - 1; i >= 0; i-- {
		s = s[:spans[i][0]] + RedactedMarker + s[spans[i][1]:]
	}
	if strings.Contains(s, "@") {
		s = urlPassword.ReplaceAllString(s, "${1}"+RedactedMarker+"@")
	}
	return RedactText(s)
}

// Redact returns e with every sealed value in its payload shown as
// RedactedMarker: what every reader outside the write side sees.
func (e Event) Redact() Event {
	e.Data = RedactSealed(e.Data)
	return e
}
