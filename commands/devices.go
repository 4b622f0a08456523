package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"unicode/utf8"

	moltgate "github.com/moltgate/moltgate"
)

// Limits on pairing requests: a client that has the gateway token but is
// not approved must not be able to grow the queue or the log without bound.
const (
	MaxPendingDevices = 32
	MaxDeviceField    = 128 // characters of a display name, platform, client id…
	MaxScopes         = 16
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

// validPairingRequest checks what an unknown device sent about itself.
func validPairingRequest(req moltgate.Device) error {
	if req.DeviceID == "" || req.PublicKey == "" {
		return moltgate.Errorf(moltgate.EINVALID, "a pairing request needs a device id and public key")
	}
	for name, v := range map[string]string{"displayName": req.DisplayName, "platform": req.Platform, "deviceFamily": req.DeviceFamily,
		"client.id": req.ClientID, "client.mode": req.ClientMode, "role": req.Role} {
		if utf8.RuneCountInString(v) > MaxDeviceField || !utf8.ValidString(v) {
			return moltgate.Errorf(moltgate.EINVALID, "%s must be valid text of at most %d characters", name, MaxDeviceField)
		}
	}
	if len(req.Scopes) > MaxScopes {
		return moltgate.Errorf(moltgate.EINVALID, "at most %d scopes may be requested", MaxScopes)
	}
	for _, sc := range req.Scopes {
		if len(sc) > 64 {
			return moltgate.Errorf(moltgate.EINVALID, "scope names are at most 64 characters")
		}
	}
	return nil
}

// RequestPairing implements moltgate.DeviceService. A device that asks
// again while its request is pending (a waiting browser reconnects every
// few seconds) keeps its request; the request is renewed, with an event,
// only once half of its time has run out, so waiting does not fill the log.
func (s *Service) RequestPairing(ctx context.Context, req moltgate.Device, meta moltgate.Meta) (string, bool, error) {
	if err := validPairingRequest(req); err != nil {
		return "", false, err
	}
	var requestID string
	var created bool
	_, err := s.decide(ctx, false, func() ([]moltgate.Event, error) {
		now := s.Now()
		version := s.Models.Devices.StreamVersion(req.DeviceID)
		pending := s.Models.Devices.Pending(now)
		requestID, created = moltgate.NewID(), true
		for _, p := range pending {
			if p.DeviceID != req.DeviceID || p.PublicKey != req.PublicKey || p.Role != req.Role || !slices.Equal(p.Scopes, req.Scopes) {
				continue
			}
			if p.ExpiresAt.Sub(now) > s.PairingTTL/2 {
				requestID, created = p.RequestID, false
				return nil, nil
			}
			requestID, created = p.RequestID, false
		}
		if created && len(pending) >= MaxPendingDevices {
			return nil, moltgate.Errorf(moltgate.EUNAVAILABLE, "%d devices are already waiting for approval: approve or reject them first", len(pending))
		}
		return []moltgate.Event{at(moltgate.MustEvent(moltgate.DeviceStream(req.DeviceID), moltgate.EventDevicePairingRequested, moltgate.DevicePairingRequestedData{
			RequestID: requestID, DeviceID: req.DeviceID, PublicKey: req.PublicKey, DisplayName: req.DisplayName,
			Platform: req.Platform, DeviceFamily: req.DeviceFamily, ClientID: req.ClientID, ClientMode: req.ClientMode,
			Role: req.Role, Scopes: req.Scopes, RemoteIP: req.RemoteIP, ExpiresAtMs: now.Add(s.PairingTTL).UnixMilli(),
		}, meta), version+1)}, nil
	})
	if err != nil {
		return "", false, err
	}
	return requestID, created, nil
}

// ApprovePairing implements moltgate.DeviceService.
func (s *Service) ApprovePairing(ctx context.Context, requestID string, grantor []string, meta moltgate.Meta) (moltgate.Device, error) {
	var deviceID string
	_, err := s.decide(ctx, true, func() ([]moltgate.Event, error) {
		req, ok := s.Models.Devices.PendingRequest(requestID)
		if !ok {
			var err error
			deviceID, err = s.decided(requestID, "approved")
			return nil, err
		}
		if !s.Now().Before(req.ExpiresAt) {
			return nil, moltgate.Errorf(moltgate.ENOTFOUND, "pairing request %s has expired; the device will ask again when it reconnects", requestID)
		}
		if missing := moltgate.MissingScopes(grantor, req.Scopes); len(missing) > 0 {
			return nil, &moltgate.Error{Code: moltgate.EFORBIDDEN,
				Message: "a device may grant only scopes it holds itself: this request asks for " + strings.Join(missing, ", "),
				Details: map[string]any{"code": "MISSING_SCOPE", "missingScopes": missing}}
		}
		deviceID = req.DeviceID
		return []moltgate.Event{at(moltgate.MustEvent(moltgate.DeviceStream(req.DeviceID), moltgate.EventDevicePairingApproved, moltgate.DevicePairingApprovedData{
			RequestID: requestID, DeviceID: req.DeviceID, Role: req.Role, Scopes: req.Scopes,
		}, meta), req.Version+1)}, nil
	})
	if err != nil {
		return moltgate.Device{}, err
	}
	dev, _ := s.Models.Devices.Device(deviceID)
	return dev, nil
}

// decided answers a decision on a request that is no longer pending: the
// same decision again is not an error (want), the other one is a conflict.
// It returns the device the request concerned; an approval is answered
// only while that device is paired (removed, it has nothing to show).
func (s *Service) decided(requestID, want string) (deviceID string, err error) {
	decision, deviceID, ok := s.Models.Devices.Decision(requestID)
	switch {
	case !ok:
		return "", moltgate.Errorf(moltgate.ENOTFOUND, "no pending pairing request %s", requestID)
	case decision != want:
		return "", &moltgate.Error{Code: moltgate.ECONFLICT, Message: "pairing request " + requestID + " was already " + decision,
			Details: map[string]any{"state": decision}}
	case want == "approved":
		if _, paired := s.Models.Devices.Device(deviceID); !paired {
			return "", moltgate.Errorf(moltgate.ENOTFOUND, "the device approved by request %s has been removed", requestID)
		}
	}
	return deviceID, nil
}

// MaxReason bounds the reason given for a rejection or a removal.
const MaxReason = 500

func validReason(reason string) error {
	if utf8.RuneCountInString(reason) > MaxReason || !utf8.ValidString(reason) {
		return moltgate.Errorf(moltgate.EINVALID, "the reason must be text of at most %d characters", MaxReason)
	}
	return nil
}

// RejectPairing implements moltgate.DeviceService.
func (s *Service) RejectPairing(ctx context.Context, requestID, reason string, meta moltgate.Meta) (moltgate.Device, error) {
	if err := validReason(reason); err != nil {
		return moltgate.Device{}, err
	}
	var out moltgate.Device
	_, err := s.decide(ctx, true, func() ([]moltgate.Event, error) {
		req, ok := s.Models.Devices.PendingRequest(requestID)
		if !ok {
			out = moltgate.Device{RequestID: requestID, State: moltgate.DeviceRejected}
			var err error
			out.DeviceID, err = s.decided(requestID, "rejected")
			return nil, err
		}
		out = req
		out.State, out.Reason = moltgate.DeviceRejected, reason
		return []moltgate.Event{at(moltgate.MustEvent(moltgate.DeviceStream(req.DeviceID), moltgate.EventDevicePairingRejected, moltgate.DevicePairingRejectedData{
			RequestID: requestID, DeviceID: req.DeviceID, Reason: reason,
		}, meta), req.Version+1)}, nil
	})
	return out, err
}

// pairedDecision appends e, an event about a paired device, at the device
// stream's next version.
func (s *Service) pairedDecision(ctx context.Context, deviceID string, e moltgate.Event) error {
	_, err := s.decide(ctx, true, func() ([]moltgate.Event, error) {
		dev, ok := s.Models.Devices.Device(deviceID)
		if !ok {
			return nil, moltgate.Errorf(moltgate.ENOTFOUND, "no paired device %s", deviceID)
		}
		return []moltgate.Event{at(e, dev.Version+1)}, nil
	})
	return err
}

// RemoveDevice implements moltgate.DeviceService.
func (s *Service) RemoveDevice(ctx context.Context, deviceID, reason string, meta moltgate.Meta) error {
	if err := validReason(reason); err != nil {
		return err
	}
	return s.pairedDecision(ctx, deviceID, moltgate.MustEvent(moltgate.DeviceStream(deviceID), moltgate.EventDeviceRemoved,
		moltgate.DeviceRemovedData{DeviceID: deviceID, Reason: reason}, meta))
}

// IssueToken implements moltgate.DeviceService.
func (s *Service) IssueToken(ctx context.Context, deviceID string, meta moltgate.Meta) (string, error) {
	token := newToken()
	err := s.pairedDecision(ctx, deviceID, moltgate.MustEvent(moltgate.DeviceStream(deviceID), moltgate.EventDeviceTokenRotated,
		moltgate.DeviceTokenRotatedData{DeviceID: deviceID, TokenHash: HashToken(token)}, meta))
	if err != nil {
		return "", err
	}
	return token, nil
}

// RevokeToken implements moltgate.DeviceService.
func (s *Service) RevokeToken(ctx context.Context, deviceID string, meta moltgate.Meta) error {
	return s.pairedDecision(ctx, deviceID, moltgate.MustEvent(moltgate.DeviceStream(deviceID), moltgate.EventDeviceTokenRevoked,
		moltgate.DeviceTokenRevokedData{DeviceID: deviceID}, meta))
}
