package projections

import (
	"encoding/json"
	"sync/atomic"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// Set is moltgate's read models, built together by one Runner. It answers
// the root package's queries (moltgate.Queries) for the adapters.
type Set struct {
	Config    *Config        `json:"config"`
	Devices   *Devices       `json:"devices"`
	Channels  *ChannelAccess `json:"channels"`
	Sessions  *Sessions      `json:"sessions"`
	Outbox    *Outbox        `json:"outbox"`
	Workspace *Workspace     `json:"workspace"`
	position  *position
}

var _ moltgate.Queries = (*Set)(nil)

// NewSet returns empty read models.
func NewSet() *Set {
	return &Set{Config: NewConfig(), Devices: NewDevices(), Channels: NewChannelAccess(), Sessions: NewSessions(), Outbox: NewOutbox(), Workspace: NewWorkspace(), position: &position{}}
}

// All returns the set as projections for a Runner.
func (s *Set) All() []Projection {
	return []Projection{s.Config, s.Devices, s.Channels, s.Sessions, s.Outbox, s.Workspace, s.position}
}

// View returns the read models as of seq, judging expiry at now. Config
// documents are redacted: a View is shown to people.
func (s *Set) View(seq int64, now time.Time) moltgate.View {
	doc, hash := s.Config.Current()
	v := moltgate.View{
		Seq: seq, At: now,
		Config:   moltgate.ConfigView{Hash: hash, Document: moltgate.RedactSealed(doc), History: s.Config.History()},
		Devices:  moltgate.DevicesView{Pending: s.Devices.Pending(now), Paired: s.Devices.Paired(), Resolved: s.Devices.Resolved()},
		Channels: moltgate.ChannelsView{Pending: s.Channels.Pending("", now), Allowlists: map[string][]string{}},
		Sessions: s.Sessions.List(),
	}
	if v.Devices.Pending == nil {
		v.Devices.Pending = []moltgate.Device{}
	}
	if v.Channels.Pending == nil {
		v.Channels.Pending = []moltgate.PendingSender{}
	}
	for _, ch := range s.Channels.Channels() {
		v.Channels.Allowlists[ch] = s.Channels.Allowlist(ch)
	}
	return v
}

// CurrentView implements moltgate.Queries.
func (s *Set) CurrentView(now time.Time) moltgate.View {
	return s.View(s.position.seq.Load(), now)
}

// PendingDevices implements moltgate.DeviceQueries.
func (s *Set) PendingDevices(now time.Time) []moltgate.Device { return s.Devices.Pending(now) }

// PairedDevices implements moltgate.DeviceQueries.
func (s *Set) PairedDevices() []moltgate.Device { return s.Devices.Paired() }

// Device implements moltgate.DeviceQueries.
func (s *Set) Device(deviceID string) (moltgate.Device, bool) { return s.Devices.Device(deviceID) }

// PairingRequest implements moltgate.DeviceQueries.
func (s *Set) PairingRequest(requestID string) (moltgate.Device, bool) {
	return s.Devices.PendingRequest(requestID)
}

// CurrentConfig implements moltgate.ConfigQueries.
func (s *Set) CurrentConfig() (json.RawMessage, string) { return s.Config.Current() }

// ConfigHistory implements moltgate.ConfigQueries.
func (s *Set) ConfigHistory() []moltgate.ConfigVersion { return s.Config.History() }

// PendingSenders implements moltgate.ChannelQueries.
func (s *Set) PendingSenders(channel string, now time.Time) []moltgate.PendingSender {
	return s.Channels.Pending(channel, now)
}

// Allowlist implements moltgate.ChannelQueries.
func (s *Set) Allowlist(channel string) []string { return s.Channels.Allowlist(channel) }

// Allowed implements moltgate.ChannelQueries.
func (s *Set) Allowed(channel, senderID string) bool { return s.Channels.Allowed(channel, senderID) }

// WorkspaceFiles implements moltgate.WorkspaceQueries.
func (s *Set) WorkspaceFiles() []moltgate.WorkspaceFile { return s.Workspace.WorkspaceFiles() }

// PendingDeliveries implements moltgate.OutboxQueries.
func (s *Set) PendingDeliveries() []moltgate.Delivery { return s.Outbox.PendingDeliveries() }

// ListSessions implements moltgate.SessionQueries.
func (s *Set) ListSessions() []moltgate.Session { return s.Sessions.List() }

// Session implements moltgate.SessionQueries.
func (s *Set) Session(key string) (moltgate.Session, bool) { return s.Sessions.Get(key) }

// position remembers the seq of the last event the set has seen, so a
// View of the set says which moment it shows.
type position struct{ seq atomic.Int64 }

func (p *position) Name() string { return "position" }
func (p *position) Version() int { return 1 }
func (p *position) Reset()       { p.seq.Store(0) }

func (p *position) Apply(e moltgate.Event) error {
	p.seq.Store(e.Seq)
	return nil
}

// Needs implements Selective: the envelope's seq is all it reads.
func (p *position) Needs(string) Need { return NeedEnvelope }

func (p *position) Snapshot() (json.RawMessage, error) { return json.Marshal(p.seq.Load()) }

func (p *position) LoadSnapshot(b json.RawMessage) error {
	var n int64
	err := json.Unmarshal(b, &n)
	p.seq.Store(n)
	return err
}
