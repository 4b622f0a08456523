package projections

import (
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// PendingDevice is a device waiting in the approval queue.
type PendingDevice struct {
	RequestID    string    `json:"requestId"`
	DeviceID     string    `json:"deviceId"`
	PublicKey    string    `json:"publicKey"`
	DisplayName  string    `json:"displayName,omitempty"`
	Platform     string    `json:"platform,omitempty"`
	DeviceFamily string    `json:"deviceFamily,omitempty"`
	ClientID     string    `json:"clientId,omitempty"`
	ClientMode   string    `json:"clientMode,omitempty"`
	Role         string    `json:"role"`
	Scopes       []string  `json:"scopes"`
	RemoteIP     string    `json:"remoteIp,omitempty"`
	RequestedAt  time.Time `json:"requestedAt"`
	ExpiresAt    time.Time `json:"expiresAt"`
}

// PairedDevice is an approved device.
type PairedDevice struct {
	DeviceID     string    `json:"deviceId"`
	RequestID    string    `json:"requestId,omitempty"` // the request that was approved
	PublicKey    string    `json:"publicKey"`
	DisplayName  string    `json:"displayName,omitempty"`
	Platform     string    `json:"platform,omitempty"`
	DeviceFamily string    `json:"deviceFamily,omitempty"`
	ClientID     string    `json:"clientId,omitempty"`
	ClientMode   string    `json:"clientMode,omitempty"`
	Role         string    `json:"role"`
	Scopes       []string  `json:"scopes"`
	TokenHash    string    `json:"tokenHash,omitempty"` // SHA-256 of the device token; empty when revoked
	CreatedAt    time.Time `json:"createdAt"`           // when it first asked
	ApprovedAt   time.Time `json:"approvedAt"`
	ApprovedBy   string    `json:"approvedBy,omitempty"`
}

// ResolvedDevice is a request that was rejected or a device that was removed.
type ResolvedDevice struct {
	DeviceID  string    `json:"deviceId"`
	RequestID string    `json:"requestId,omitempty"`
	Status    string    `json:"status"` // rejected, removed
	Reason    string    `json:"reason,omitempty"`
	Actor     string    `json:"actor,omitempty"`
	At        time.Time `json:"at"`
}

// Devices is the read model of device pairing: the approval queue, the
// paired devices with their roles, scopes and token hashes, and what was
// rejected or removed.
type Devices struct {
	mu    sync.RWMutex
	state devicesState
}

type devicesState struct {
	Pending  map[string]*PendingDevice `json:"pending"` // by request id
	Paired   map[string]*PairedDevice  `json:"paired"`  // by device id
	Resolved []ResolvedDevice          `json:"resolved"`
}

// maxResolvedDevices bounds the rejected/removed history kept in memory.
const maxResolvedDevices = 500

// NewDevices returns an empty devices read model.
func NewDevices() *Devices {
	d := &Devices{}
	d.Reset()
	return d
}

func (d *Devices) Name() string { return "devices" }
func (d *Devices) Version() int { return 2 } // 2: paired devices remember their request id

func (d *Devices) Reset() {
	d.mu.Lock()
	d.state = devicesState{Pending: map[string]*PendingDevice{}, Paired: map[string]*PairedDevice{}}
	d.mu.Unlock()
}

func (d *Devices) Apply(e moltgate.Event) error {
	switch e.Type {
	case moltgate.EventDevicePairingRequested:
		var p moltgate.DevicePairingRequestedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		// A device asking again replaces its older request.
		for id, old := range d.state.Pending {
			if old.DeviceID == p.DeviceID {
				delete(d.state.Pending, id)
			}
		}
		d.state.Pending[p.RequestID] = &PendingDevice{
			RequestID: p.RequestID, DeviceID: p.DeviceID, PublicKey: p.PublicKey, DisplayName: p.DisplayName,
			Platform: p.Platform, DeviceFamily: p.DeviceFamily, ClientID: p.ClientID, ClientMode: p.ClientMode,
			Role: p.Role, Scopes: p.Scopes, RemoteIP: p.RemoteIP,
			RequestedAt: e.RecordedAt, ExpiresAt: time.UnixMilli(p.ExpiresAtMs),
		}
	case moltgate.EventDevicePairingApproved:
		var p moltgate.DevicePairingApprovedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		dev := &PairedDevice{DeviceID: p.DeviceID, RequestID: p.RequestID, Role: p.Role, Scopes: p.Scopes, TokenHash: p.TokenHash,
			CreatedAt: e.RecordedAt, ApprovedAt: e.RecordedAt, ApprovedBy: e.Meta.Actor}
		if req, ok := d.state.Pending[p.RequestID]; ok {
			dev.PublicKey, dev.DisplayName, dev.Platform, dev.DeviceFamily = req.PublicKey, req.DisplayName, req.Platform, req.DeviceFamily
			dev.ClientID, dev.ClientMode, dev.CreatedAt = req.ClientID, req.ClientMode, req.RequestedAt
			delete(d.state.Pending, p.RequestID)
		} else if old, ok := d.state.Paired[p.DeviceID]; ok {
			// Re-approval of a paired device (new scopes): keep its identity.
			dev.PublicKey, dev.DisplayName, dev.Platform, dev.DeviceFamily = old.PublicKey, old.DisplayName, old.Platform, old.DeviceFamily
			dev.ClientID, dev.ClientMode, dev.CreatedAt = old.ClientID, old.ClientMode, old.CreatedAt
		}
		d.state.Paired[p.DeviceID] = dev
	case moltgate.EventDevicePairingRejected:
		var p moltgate.DevicePairingRejectedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		delete(d.state.Pending, p.RequestID)
		d.resolvedLocked(ResolvedDevice{DeviceID: p.DeviceID, RequestID: p.RequestID, Status: "rejected", Reason: p.Reason, Actor: e.Meta.Actor, At: e.RecordedAt})
	case moltgate.EventDeviceRemoved:
		var p moltgate.DeviceRemovedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		delete(d.state.Paired, p.DeviceID)
		d.resolvedLocked(ResolvedDevice{DeviceID: p.DeviceID, Status: "removed", Reason: p.Reason, Actor: e.Meta.Actor, At: e.RecordedAt})
	case moltgate.EventDeviceTokenRotated:
		var p moltgate.DeviceTokenRotatedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if dev, ok := d.state.Paired[p.DeviceID]; ok {
			dev.TokenHash = p.TokenHash
		}
	case moltgate.EventDeviceTokenRevoked:
		var p moltgate.DeviceTokenRevokedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if dev, ok := d.state.Paired[p.DeviceID]; ok {
			dev.TokenHash = ""
		}
	}
	return nil
}

func (d *Devices) resolvedLocked(r ResolvedDevice) {
	d.state.Resolved = append(d.state.Resolved, r)
	if n := len(d.state.Resolved); n > maxResolvedDevices {
		d.state.Resolved = d.state.Resolved[n-maxResolvedDevices:]
	}
}

// Pending returns the requests that have not expired at now, oldest first.
// Expiry is read against the clock rather than recorded as an event, so
// replaying an old log gives the same queue it had then.
func (d *Devices) Pending(now time.Time) []PendingDevice {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []PendingDevice
	for _, p := range d.state.Pending {
		if now.Before(p.ExpiresAt) {
			out = append(out, *p)
		}
	}
	// Ties (events in the same millisecond) are broken by id, so the
	// order does not depend on map iteration.
	sort.Slice(out, func(i, j int) bool {
		if !out[i].RequestedAt.Equal(out[j].RequestedAt) {
			return out[i].RequestedAt.Before(out[j].RequestedAt)
		}
		return out[i].RequestID < out[j].RequestID
	})
	return out
}

// PendingRequest returns the request with id, expired or not.
func (d *Devices) PendingRequest(requestID string) (PendingDevice, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	p, ok := d.state.Pending[requestID]
	if !ok {
		return PendingDevice{}, false
	}
	return *p, true
}

// Paired returns the paired devices, oldest approval first.
func (d *Devices) Paired() []PairedDevice {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]PairedDevice, 0, len(d.state.Paired))
	for _, p := range d.state.Paired {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ApprovedAt.Equal(out[j].ApprovedAt) {
			return out[i].ApprovedAt.Before(out[j].ApprovedAt)
		}
		return out[i].DeviceID < out[j].DeviceID
	})
	return out
}

// Device returns the paired device with id.
func (d *Devices) Device(deviceID string) (PairedDevice, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	p, ok := d.state.Paired[deviceID]
	if !ok {
		return PairedDevice{}, false
	}
	return *p, true
}

// Resolved returns the recent rejections and removals, oldest first.
func (d *Devices) Resolved() []ResolvedDevice {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return append([]ResolvedDevice(nil), d.state.Resolved...)
}

func (d *Devices) MarshalJSON() ([]byte, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return json.Marshal(d.state)
}

func (d *Devices) Snapshot() (json.RawMessage, error) { return d.MarshalJSON() }

func (d *Devices) LoadSnapshot(b json.RawMessage) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return json.Unmarshal(b, &d.state)
}

// Needs implements Selective.
func (d *Devices) Needs(t string) Need {
	if strings.HasPrefix(t, "device.") {
		return NeedPayload
	}
	return NeedNothing
}
