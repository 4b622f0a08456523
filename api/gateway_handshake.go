package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// handshake authenticates a connect request and returns hello-ok.
//
// Who gets in:
//   - a paired device that signed the challenge and presents the gateway
//     token or its own device token;
//   - an unknown device that signed the challenge and presents the gateway
//     token: it is put in the approval queue and told NOT_PAIRED (in
//     DEV_MODE it is approved on the spot);
//   - a client without device identity presenting the gateway token, only
//     from a local connection (Trust.Local: loopback trust on, a direct
//     loopback peer without proxy headers, addressed to a loopback name),
//     like a local `openclaw gateway call`.
func (c *conn) handshake(raw json.RawMessage, nonce string) (map[string]any, error) {
	now := time.Now()
	if c.g.limiter.blocked(c.ip, now) {
		return nil, authError("AUTH_RATE_LIMITED", "too-many-failures", "too many failed attempts; wait a minute")
	}
	var p connectParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, moltgate.Errorf(moltgate.EINVALID, "connect params are not valid JSON")
	}
	if p.MinProtocol > ProtocolVersion || (p.MaxProtocol != 0 && p.MaxProtocol < ProtocolVersion) {
		return nil, moltgate.Errorf(moltgate.EINVALID, "protocol %d-%d is not supported: this gateway speaks %d", p.MinProtocol, p.MaxProtocol, ProtocolVersion)
	}
	if p.Role == "" {
		p.Role = "operator"
	}
	if p.Role != "operator" {
		return nil, moltgate.Errorf(moltgate.EINVALID, "role %q is not supported: moltgate serves operator clients", p.Role)
	}
	token := p.Auth.Token
	if token == "" {
		token = p.Auth.DeviceToken
	}
	fail := func(err error) (map[string]any, error) {
		c.g.limiter.fail(c.ip, now)
		return nil, err
	}

	var deviceToken string
	switch {
	case p.Device == nil:
		if !tokenEqual(token, c.g.Token) {
			return fail(authError("AUTH_TOKEN_MISMATCH", "token", "gateway token missing or wrong"))
		}
		if !c.local {
			return fail(&moltgate.Error{Code: moltgate.ENOTPAIRED, Message: "device identity required",
				Details: map[string]any{"code": "DEVICE_IDENTITY_REQUIRED", "reason": "only direct loopback clients may connect without a device identity"}})
		}
		c.scopes = slices.Compact(slices.Sorted(slices.Values(p.Scopes)))
		c.actor = "local:" + p.Client.ID

	default:
		pub, err := verifyDevice(&p, nonce, now)
		if err != nil {
			return fail(err)
		}
		deviceID := DeviceID(pub)
		dev, paired := c.g.Queries.Device(deviceID)
		switch {
		case paired && (tokenEqual(token, c.g.Token) || (dev.TokenHash != "" && token != "" && c.g.TokenHash(token) == dev.TokenHash)):
		case paired:
			return fail(authError("AUTH_TOKEN_MISMATCH", "token", "gateway or device token missing or wrong"))
		case !tokenEqual(token, c.g.Token):
			return fail(authError("AUTH_TOKEN_MISMATCH", "token", "gateway token missing or wrong"))
		default:
			if dev, err = c.pair(&p, deviceID, pub); err != nil {
				return nil, err
			}
		}
		c.deviceID, c.actor = deviceID, "device:"+deviceID
		c.scopes = nil
		for _, s := range p.Scopes {
			if slices.Contains(dev.Scopes, s) && !slices.Contains(c.scopes, s) {
				c.scopes = append(c.scopes, s)
			}
		}
		if len(p.Scopes) == 0 { // a client that asks for nothing gets what was approved
			c.scopes = slices.Clone(dev.Scopes)
		}
		slices.Sort(c.scopes)
		if dev.TokenHash == "" {
			// First connect since approval (or since a revoke): hand the
			// device its token, once; only the hash is kept.
			meta := moltgate.Meta{Actor: c.actor, Source: moltgate.SourceWS, RemoteIP: c.ip}
			if deviceToken, err = c.g.Devices.IssueToken(context.Background(), deviceID, meta); err != nil {
				return nil, err
			}
		}
	}
	c.role = p.Role
	c.deltaOnly = slices.Contains(p.Caps, CapDeltaOnly)
	auth := map[string]any{"role": c.role, "scopes": nonNil(c.scopes)}
	if deviceToken != "" {
		auth["deviceToken"] = deviceToken
	}
	return map[string]any{
		"type":     "hello-ok",
		"protocol": ProtocolVersion,
		"server":   map[string]any{"version": moltgate.Version, "connId": c.id},
		"features": map[string]any{"methods": methodNames, "events": gatewayEvents, "caps": []string{CapDeltaOnly}},
		"snapshot": c.g.snapshot(),
		"auth":     auth,
		"policy": map[string]any{
			"maxPayload":       c.g.Policy.MaxPayload,
			"maxBufferedBytes": c.g.Policy.MaxBufferedBytes,
			"tickIntervalMs":   c.g.Policy.TickInterval.Milliseconds(),
		},
	}, nil
}

// pair puts an unknown device in the approval queue, or approves it at
// once in DEV_MODE.
func (c *conn) pair(p *connectParams, deviceID string, pub []byte) (dev moltgate.Device, err error) {
	ctx := context.Background()
	meta := moltgate.Meta{Actor: "device:" + deviceID, Source: moltgate.SourceWS, RemoteIP: c.ip}
	req := moltgate.Device{
		DeviceID: deviceID, PublicKey: base64.RawURLEncoding.EncodeToString(pub), DisplayName: p.Client.DisplayName,
		Platform: p.Client.Platform, DeviceFamily: p.Client.DeviceFamily, ClientID: p.Client.ID, ClientMode: p.Client.Mode,
		Role: p.Role, Scopes: p.Scopes, RemoteIP: c.ip,
	}
	requestID, _, err := c.g.Devices.RequestPairing(ctx, req, meta)
	if err != nil {
		return dev, err
	}
	if !c.g.DevMode {
		return dev, &moltgate.Error{Code: moltgate.ENOTPAIRED, Message: "pairing required: approve this device in the admin or with `openclaw devices approve " + requestID + "`",
			Details: map[string]any{"code": "PAIRING_REQUIRED", "requestId": requestID, "deviceId": deviceID, "recommendedNextStep": "wait_then_retry"}}
	}
	// DEV_MODE stands in for the owner, who holds every scope.
	return c.g.Devices.ApprovePairing(ctx, requestID, moltgate.OwnerScopes, moltgate.Meta{Actor: "dev-mode", Source: moltgate.SourceSystem})
}

// gatewayEvents are the events this gateway sends.
var gatewayEvents = []string{"connect.challenge", "tick", "chat", "agent", "device.pair.requested", "device.pair.resolved", "config.changed"}

// snapshot is hello-ok's picture of the gateway.
func (g *Gateway) snapshot() map[string]any {
	return map[string]any{
		"sessionDefaults": map[string]any{"defaultAgentId": "main", "mainKey": "main", "mainSessionKey": moltgate.MainSessionKey},
		"model":           g.modelInfo(),
		"uptimeMs":        time.Since(g.started).Milliseconds(),
	}
}
