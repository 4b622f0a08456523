package api

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"strconv"
	"strings"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// connectParams is connect's params as the OpenClaw clients send them.
type connectParams struct {
	MinProtocol int `json:"minProtocol"`
	MaxProtocol int `json:"maxProtocol"`
	Client      struct {
		ID           string `json:"id"`
		Version      string `json:"version"`
		Platform     string `json:"platform"`
		DeviceFamily string `json:"deviceFamily"`
		Mode         string `json:"mode"`
		InstanceID   string `json:"instanceId"`
		DisplayName  string `json:"displayName"`
	} `json:"client"`
	Role   string   `json:"role"`
	Scopes []string `json:"scopes"`
	Caps   []string `json:"caps"`
	Auth   struct {
		Token       string `json:"token"`
		DeviceToken string `json:"deviceToken"`
		Password    string `json:"password"`
	} `json:"auth"`
	Device *deviceProof `json:"device"`
}

// deviceProof is a device's identity and its signature of the challenge.
type deviceProof struct {
	ID        string `json:"id"`
	PublicKey string `json:"publicKey"`
	Signature string `json:"signature"`
	SignedAt  int64  `json:"signedAt"`
	Nonce     string `json:"nonce"`
}

// maxSignatureSkew bounds how far signedAt may be from the server's clock.
const maxSignatureSkew = 10 * time.Minute

// authError is a refused connect: protocol details plus the close reason.
func authError(code, reason, message string) *moltgate.Error {
	return &moltgate.Error{Code: moltgate.EUNAUTHORIZED, Message: message, Details: map[string]any{"code": code, "reason": reason}}
}

// verifyDevice checks a device proof against the connection's challenge
// nonce. It accepts OpenClaw's v3 payload and the legacy v2 one, and
// returns the raw public key.
func verifyDevice(p *connectParams, nonce string, now time.Time) (ed25519.PublicKey, error) {
	d := p.Device
	if d.Nonce == "" {
		return nil, authError("DEVICE_AUTH_NONCE_REQUIRED", "device-nonce-missing", "device nonce required")
	}
	if subtle.ConstantTimeCompare([]byte(d.Nonce), []byte(nonce)) != 1 {
		return nil, authError("DEVICE_AUTH_NONCE_MISMATCH", "device-nonce-mismatch", "device nonce mismatch")
	}
	pub, err := parsePublicKey(d.PublicKey)
	if err != nil {
		return nil, authError("DEVICE_AUTH_PUBLIC_KEY_INVALID", "device-public-key", "device public key invalid")
	}
	if DeviceID(pub) != strings.ToLower(d.ID) {
		return nil, authError("DEVICE_AUTH_DEVICE_ID_MISMATCH", "device-id-mismatch", "device identity mismatch")
	}
	if skew := now.Sub(time.UnixMilli(d.SignedAt)); skew > maxSignatureSkew || skew < -maxSignatureSkew {
		return nil, authError("DEVICE_AUTH_SIGNATURE_EXPIRED", "device-signature-stale", "device signature expired")
	}
	sig, err := decodeBase64(d.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, authError("DEVICE_AUTH_SIGNATURE_INVALID", "device-signature", "device signature invalid")
	}
	for _, payload := range []string{SignaturePayloadV3(p, d), SignaturePayloadV2(p, d)} {
		if ed25519.Verify(pub, []byte(payload), sig) {
			return pub, nil
		}
	}
	return nil, authError("DEVICE_AUTH_SIGNATURE_INVALID", "device-signature", "device signature invalid")
}

// SignaturePayloadV3 is what an OpenClaw 2026.9 client signs:
// v3|deviceId|clientId|clientMode|role|scopesCSV|signedAtMs|token|nonce|platform|deviceFamily
func SignaturePayloadV3(p *connectParams, d *deviceProof) string {
	return "v3|" + signedFields(p, d) + "|" + normalize(p.Client.Platform) + "|" + normalize(p.Client.DeviceFamily)
}

// SignaturePayloadV2 is the legacy payload:
// v2|deviceId|clientId|clientMode|role|scopesCSV|signedAtMs|token|nonce
func SignaturePayloadV2(p *connectParams, d *deviceProof) string {
	return "v2|" + signedFields(p, d)
}

func signedFields(p *connectParams, d *deviceProof) string {
	return strings.Join([]string{d.ID, p.Client.ID, p.Client.Mode, p.Role, strings.Join(p.Scopes, ","),
		strconv.FormatInt(d.SignedAt, 10), p.Auth.Token, d.Nonce}, "|")
}

// normalize trims and ASCII-lowercases, as the client does for v3.
func normalize(s string) string {
	s = strings.TrimSpace(s)
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// DeviceID is hex(sha256(raw public key)).
func DeviceID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// parsePublicKey reads a raw 32-byte key in base64url or base64, or a PEM
// or DER SubjectPublicKeyInfo.
func parsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if block, _ := pem.Decode([]byte(s)); block != nil {
		return parseSPKI(block.Bytes)
	}
	raw, err := decodeBase64(s)
	if err != nil {
		return nil, err
	}
	if len(raw) == ed25519.PublicKeySize {
		return ed25519.PublicKey(raw), nil
	}
	return parseSPKI(raw)
}

func parseSPKI(der []byte) (ed25519.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, moltgate.Errorf(moltgate.EINVALID, "not an Ed25519 key")
	}
	return pub, nil
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "+/") {
		return base64.RawStdEncoding.DecodeString(s)
	}
	return base64.RawURLEncoding.DecodeString(s)
}

// tokenEqual compares secrets in constant time.
func tokenEqual(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
