package projections

import (
	"encoding/json"
	"time"
)

// Set is moltgate's read models, built together by one Runner.
type Set struct {
	Config   *Config        `json:"config"`
	Devices  *Devices       `json:"devices"`
	Channels *ChannelAccess `json:"channels"`
	Sessions *Sessions      `json:"sessions"`
}

// NewSet returns empty read models.
func NewSet() *Set {
	return &Set{Config: NewConfig(), Devices: NewDevices(), Channels: NewChannelAccess(), Sessions: NewSessions()}
}

// All returns the set as projections for a Runner.
func (s *Set) All() []Projection {
	return []Projection{s.Config, s.Devices, s.Channels, s.Sessions}
}

// View is a plain, printable picture of the read models at one moment:
// what `moltgate replay` prints and the admin's time machine compares.
type View struct {
	Seq      int64        `json:"seq"`
	At       time.Time    `json:"at"`
	Config   ConfigView   `json:"config"`
	Devices  DevicesView  `json:"devices"`
	Channels ChannelsView `json:"channels"`
	Sessions []Session    `json:"sessions"`
	Errors   []ApplyError `json:"errors,omitempty"`
}

// ConfigView is the config part of a View.
type ConfigView struct {
	Hash     string          `json:"hash,omitempty"`
	Document json.RawMessage `json:"document,omitempty"`
	History  []ConfigVersion `json:"history,omitempty"`
}

// DevicesView is the devices part of a View.
type DevicesView struct {
	Pending  []PendingDevice  `json:"pending"`
	Paired   []PairedDevice   `json:"paired"`
	Resolved []ResolvedDevice `json:"resolved,omitempty"`
}

// ChannelsView is the channel-access part of a View.
type ChannelsView struct {
	Pending    []PendingSender     `json:"pending"`
	Allowlists map[string][]string `json:"allowlists"`
}

// View returns the read models as of seq, judging expiry at now.
func (s *Set) View(seq int64, now time.Time) View {
	doc, hash := s.Config.Current()
	v := View{
		Seq: seq, At: now,
		Config:   ConfigView{Hash: hash, Document: doc, History: s.Config.History()},
		Devices:  DevicesView{Pending: s.Devices.Pending(now), Paired: s.Devices.Paired(), Resolved: s.Devices.Resolved()},
		Channels: ChannelsView{Pending: s.Channels.Pending("", now), Allowlists: map[string][]string{}},
		Sessions: s.Sessions.List(),
	}
	if v.Devices.Pending == nil {
		v.Devices.Pending = []PendingDevice{}
	}
	if v.Channels.Pending == nil {
		v.Channels.Pending = []PendingSender{}
	}
	for _, ch := range s.Channels.Channels() {
		v.Channels.Allowlists[ch] = s.Channels.Allowlist(ch)
	}
	return v
}
