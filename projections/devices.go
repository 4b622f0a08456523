package projections

import (
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// Devices is the read model of device pairing: the approval queue, the
// paired devices with their roles, scopes and token hashes, what was
// rejected or removed, and the version of every device stream (a command
// that decides on a device appends at that version + 1).
type Devices struct {
	mu    sync.RWMutex
	state devicesState
}

type devicesState struct {
	Pending  map[string]*moltgate.Device `json:"pending"`  // by request id
	Paired   map[string]*moltgate.Device `json:"paired"`   // by device id
	Resolved []moltgate.Device           `json:"resolved"` // rejected and removed, newest last
	// Decided remembers how each request ended and for which device, so a
	// second decision is answered with the first one.
	Decided  map[string]decidedRequest `json:"decided"`
	Tokens   map[string]string         `json:"tokens"`   // device id → token hash (Device.TokenHash is not in JSON)
	Versions map[string]int64          `json:"versions"` // device id → stream version
}

// decidedRequest is how a pairing request ended.
type decidedRequest struct {
	Decision string `json:"decision"` // "approved" or "rejected"
	DeviceID string `json:"deviceId"`
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
func (d *Devices) Version() int { return 4 } // 4: decisions name their device

func (d *Devices) Reset() {
	d.mu.Lock()
	d.state = devicesState{Pending: map[string]*moltgate.Device{}, Paired: map[string]*moltgate.Device{},
		Decided: map[string]decidedRequest{}, Tokens: map[string]string{}, Versions: map[string]int64{}}
	d.mu.Unlock()
}

// deviceIDFromStream is the inverse of moltgate.DeviceStream.
func deviceIDFromStream(stream string) string { return strings.TrimPrefix(stream, "device:") }

func (d *Devices) Apply(e moltgate.Event) error {
	if !strings.HasPrefix(e.Type, "device.") {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state.Versions[deviceIDFromStream(e.Stream)] = e.Version
	switch e.Type {
	case moltgate.EventDevicePairingRequested:
		var p moltgate.DevicePairingRequestedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		// A device asking again replaces its older request.
		for id, old := range d.state.Pending {
			if old.DeviceID == p.DeviceID && id != p.RequestID {
				delete(d.state.Pending, id)
			}
		}
		requested := e.RecordedAt
		if old, ok := d.state.Pending[p.RequestID]; ok {
			requested = old.RequestedAt // a renewal keeps its place in the queue
		}
		d.state.Pending[p.RequestID] = &moltgate.Device{
			RequestID: p.RequestID, DeviceID: p.DeviceID, PublicKey: p.PublicKey, DisplayName: p.DisplayName,
			Platform: p.Platform, DeviceFamily: p.DeviceFamily, ClientID: p.ClientID, ClientMode: p.ClientMode,
			Role: p.Role, Scopes: p.Scopes, RemoteIP: p.RemoteIP, State: moltgate.DevicePending,
			RequestedAt: requested, ExpiresAt: time.UnixMilli(p.ExpiresAtMs),
		}
	case moltgate.EventDevicePairingApproved:
		var p moltgate.DevicePairingApprovedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		dev := &moltgate.Device{DeviceID: p.DeviceID, RequestID: p.RequestID, Role: p.Role, Scopes: p.Scopes,
			State: moltgate.DevicePaired, RequestedAt: e.RecordedAt, ApprovedAt: e.RecordedAt}
		src, ok := d.state.Pending[p.RequestID]
		if !ok {
			src = d.state.Paired[p.DeviceID] // re-approval of a paired device (new scopes): keep its identity
		}
		if src != nil {
			dev.PublicKey, dev.DisplayName, dev.Platform, dev.DeviceFamily = src.PublicKey, src.DisplayName, src.Platform, src.DeviceFamily
			dev.ClientID, dev.ClientMode, dev.RemoteIP, dev.RequestedAt = src.ClientID, src.ClientMode, src.RemoteIP, src.RequestedAt
		}
		delete(d.state.Pending, p.RequestID)
		d.state.Paired[p.DeviceID] = dev
		d.state.Decided[p.RequestID] = decidedRequest{Decision: "approved", DeviceID: p.DeviceID}
		if p.TokenHash != "" {
			d.state.Tokens[p.DeviceID] = p.TokenHash
		}
	case moltgate.EventDevicePairingRejected:
		var p moltgate.DevicePairingRejectedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		dev := moltgate.Device{DeviceID: p.DeviceID, RequestID: p.RequestID, State: moltgate.DeviceRejected, Reason: p.Reason, ResolvedAt: e.RecordedAt}
		if req, ok := d.state.Pending[p.RequestID]; ok {
			dev = *req
			dev.State, dev.Reason, dev.ResolvedAt = moltgate.DeviceRejected, p.Reason, e.RecordedAt
		}
		delete(d.state.Pending, p.RequestID)
		d.state.Decided[p.RequestID] = decidedRequest{Decision: "rejected", DeviceID: p.DeviceID}
		d.resolvedLocked(dev)
	case moltgate.EventDeviceRemoved:
		var p moltgate.DeviceRemovedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		dev := moltgate.Device{DeviceID: p.DeviceID}
		if old, ok := d.state.Paired[p.DeviceID]; ok {
			dev = *old
		}
		dev.State, dev.Reason, dev.ResolvedAt = moltgate.DeviceRemoved, p.Reason, e.RecordedAt
		delete(d.state.Paired, p.DeviceID)
		delete(d.state.Tokens, p.DeviceID)
		d.resolvedLocked(dev)
	case moltgate.EventDeviceTokenRotated:
		var p moltgate.DeviceTokenRotatedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		if _, ok := d.state.Paired[p.DeviceID]; ok {
			d.state.Tokens[p.DeviceID] = p.TokenHash
		}
	case moltgate.EventDeviceTokenRevoked:
		var p moltgate.DeviceTokenRevokedData
		if err := e.Decode(&p); err != nil {
			return err
		}
		delete(d.state.Tokens, p.DeviceID)
	}
	return nil
}

func (d *Devices) resolvedLocked(r moltgate.Device) {
	d.state.Resolved = append(d.state.Resolved, r)
	if n := len(d.state.Resolved); n > maxResolvedDevices {
		d.state.Resolved = d.state.Resolved[n-maxResolvedDevices:]
	}
}

// withState fills in what the record does not carry itself: the token hash
// and the stream version.
func (d *Devices) withState(dev moltgate.Device) moltgate.Device {
	dev.TokenHash = d.state.Tokens[dev.DeviceID]
	dev.HasToken = dev.TokenHash != "" && dev.State == moltgate.DevicePaired
	dev.Version = d.state.Versions[dev.DeviceID]
	return dev
}

// Pending returns the requests that have not expired at now, oldest first.
// Expiry is read against the clock rather than recorded as an event, so
// replaying an old log gives the same queue it had then.
func (d *Devices) Pending(now time.Time) []moltgate.Device {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []moltgate.Device
	for _, p := range d.state.Pending {
		if now.Before(p.ExpiresAt) {
			out = append(out, d.withState(*p))
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
func (d *Devices) PendingRequest(requestID string) (moltgate.Device, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	p, ok := d.state.Pending[requestID]
	if !ok {
		return moltgate.Device{}, false
	}
	return d.withState(*p), true
}

// Decision returns how a request ended ("approved", "rejected") and the
// device it concerned, or ok false when it is pending or unknown.
func (d *Devices) Decision(requestID string) (decision, deviceID string, ok bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	r, ok := d.state.Decided[requestID]
	return r.Decision, r.DeviceID, ok
}

// Paired returns the paired devices, oldest approval first.
func (d *Devices) Paired() []moltgate.Device {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]moltgate.Device, 0, len(d.state.Paired))
	for _, p := range d.state.Paired {
		out = append(out, d.withState(*p))
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
func (d *Devices) Device(deviceID string) (moltgate.Device, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	p, ok := d.state.Paired[deviceID]
	if !ok {
		return moltgate.Device{}, false
	}
	return d.withState(*p), true
}

// StreamVersion returns the version of a device's stream (0: no events).
func (d *Devices) StreamVersion(deviceID string) int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.state.Versions[deviceID]
}

// Resolved returns the recent rejections and removals, oldest first.
func (d *Devices) Resolved() []moltgate.Device {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return append([]moltgate.Device(nil), d.state.Resolved...)
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
