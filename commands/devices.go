package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"

	moltgate "github.com/moltgate/moltgate"
)

// HashToken is how a device token is stored: only its SHA-256 enters the
// log, so the replica never holds a usable credential.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// newToken returns 32 random bytes, base64url.
func newToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// RequestPairing implements moltgate.DeviceService. A device that asks
// again while its request is pending (the client reconnects every few
// seconds) keeps its request id; its expiry is renewed.
func (s *Service) RequestPairing(ctx context.Context, req moltgate.PairingRequest, meta moltgate.Meta) (string, bool, error) {
	if req.DeviceID == "" || req.PublicKey == "" {
		return "", false, moltgate.Errorf(moltgate.EINVALID, "a pairing request needs a device id and public key")
	}
	now := s.Now()
	requestID, created := moltgate.NewID(), true
	for _, p := range s.Models.Devices.Pending(now) {
		if p.DeviceID == req.DeviceID && p.PublicKey == req.PublicKey && p.Role == req.Role && equalScopes(p.Scopes, req.Scopes) {
			requestID, created = p.RequestID, false
		}
	}
	e := moltgate.MustEvent(moltgate.DeviceStream(req.DeviceID), moltgate.EventDevicePairingRequested, moltgate.DevicePairingRequestedData{
		RequestID: requestID, DeviceID: req.DeviceID, PublicKey: req.PublicKey, DisplayName: req.DisplayName,
		Platform: req.Platform, DeviceFamily: req.DeviceFamily, ClientID: req.ClientID, ClientMode: req.ClientMode,
		Role: req.Role, Scopes: req.Scopes, RemoteIP: req.RemoteIP, ExpiresAtMs: now.Add(s.PairingTTL).UnixMilli(),
	}, meta)
	if _, err := s.append(ctx, false, e); err != nil {
		return "", false, err
	}
	return requestID, created, nil
}

func equalScopes(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ApprovePairing implements moltgate.DeviceService.
func (s *Service) ApprovePairing(ctx context.Context, requestID string, meta moltgate.Meta) (string, error) {
	req, ok := s.Models.Devices.PendingRequest(requestID)
	if !ok {
		// Approving twice is not an error: the first approval stands.
		for _, d := range s.Models.Devices.Paired() {
			if d.RequestID == requestID {
				return d.DeviceID, nil
			}
		}
		return "", moltgate.Errorf(moltgate.ENOTFOUND, "no pending pairing request %s", requestID)
	}
	if !s.Now().Before(req.ExpiresAt) {
		return "", moltgate.Errorf(moltgate.ENOTFOUND, "pairing request %s has expired; the device will ask again when it reconnects", requestID)
	}
	e := moltgate.MustEvent(moltgate.DeviceStream(req.DeviceID), moltgate.EventDevicePairingApproved, moltgate.DevicePairingApprovedData{
		RequestID: requestID, DeviceID: req.DeviceID, Role: req.Role, Scopes: req.Scopes,
	}, meta)
	if _, err := s.append(ctx, true, e); err != nil {
		return "", err
	}
	return req.DeviceID, nil
}

// RejectPairing implements moltgate.DeviceService.
func (s *Service) RejectPairing(ctx context.Context, requestID, reason string, meta moltgate.Meta) error {
	req, ok := s.Models.Devices.PendingRequest(requestID)
	if !ok {
		return moltgate.Errorf(moltgate.ENOTFOUND, "no pending pairing request %s", requestID)
	}
	e := moltgate.MustEvent(moltgate.DeviceStream(req.DeviceID), moltgate.EventDevicePairingRejected, moltgate.DevicePairingRejectedData{
		RequestID: requestID, DeviceID: req.DeviceID, Reason: reason,
	}, meta)
	_, err := s.append(ctx, true, e)
	return err
}

// RemoveDevice implements moltgate.DeviceService.
func (s *Service) RemoveDevice(ctx context.Context, deviceID, reason string, meta moltgate.Meta) error {
	if _, ok := s.Models.Devices.Device(deviceID); !ok {
		return moltgate.Errorf(moltgate.ENOTFOUND, "no paired device %s", deviceID)
	}
	e := moltgate.MustEvent(moltgate.DeviceStream(deviceID), moltgate.EventDeviceRemoved, moltgate.DeviceRemovedData{DeviceID: deviceID, Reason: reason}, meta)
	_, err := s.append(ctx, true, e)
	return err
}

// IssueToken implements moltgate.DeviceService.
func (s *Service) IssueToken(ctx context.Context, deviceID string, meta moltgate.Meta) (string, error) {
	if _, ok := s.Models.Devices.Device(deviceID); !ok {
		return "", moltgate.Errorf(moltgate.ENOTFOUND, "no paired device %s", deviceID)
	}
	token := newToken()
	e := moltgate.MustEvent(moltgate.DeviceStream(deviceID), moltgate.EventDeviceTokenRotated, moltgate.DeviceTokenRotatedData{DeviceID: deviceID, TokenHash: HashToken(token)}, meta)
	if _, err := s.append(ctx, true, e); err != nil {
		return "", err
	}
	return token, nil
}

// RevokeToken implements moltgate.DeviceService.
func (s *Service) RevokeToken(ctx context.Context, deviceID string, meta moltgate.Meta) error {
	if _, ok := s.Models.Devices.Device(deviceID); !ok {
		return moltgate.Errorf(moltgate.ENOTFOUND, "no paired device %s", deviceID)
	}
	e := moltgate.MustEvent(moltgate.DeviceStream(deviceID), moltgate.EventDeviceTokenRevoked, moltgate.DeviceTokenRevokedData{DeviceID: deviceID}, meta)
	_, err := s.append(ctx, true, e)
	return err
}
