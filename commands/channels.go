package commands

import (
	"context"
	"crypto/rand"
	"strings"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// ChannelPairingTTL is how long a chat-platform pairing code stays valid.
const ChannelPairingTTL = time.Hour

var _ moltgate.ChannelAccessService = (*Service)(nil)

// knownChannels are the platforms moltgate has adapters for.
var knownChannels = map[string]bool{"telegram": true, "discord": true, "slack": true}

func validChannel(ch string) error {
	if !knownChannels[ch] {
		return moltgate.Errorf(moltgate.EINVALID, "unknown channel %q: use telegram, discord or slack", ch)
	}
	return nil
}

// pairingCode is 8 characters from an alphabet without look-alikes.
func pairingCode() string {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	var b [8]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// RequestChannelPairing implements moltgate.ChannelAccessService.
func (s *Service) RequestChannelPairing(ctx context.Context, channel, senderID, senderName string, meta moltgate.Meta) (string, error) {
	if err := validChannel(channel); err != nil {
		return "", err
	}
	if strings.TrimSpace(senderID) == "" {
		return "", moltgate.Errorf(moltgate.EINVALID, "senderId is required")
	}
	now := s.Now()
	for _, p := range s.Models.Channels.Pending(channel, now) {
		if p.SenderID == senderID {
			return p.Code, nil // one live code per sender
		}
	}
	code := pairingCode()
	e := moltgate.MustEvent(moltgate.ChannelStream(channel), moltgate.EventChannelPairingRequested, moltgate.ChannelPairingRequestedData{
		Channel: channel, SenderID: senderID, SenderName: senderName, Code: code, ExpiresAtMs: now.Add(ChannelPairingTTL).UnixMilli(),
	}, meta)
	if _, err := s.append(ctx, false, e); err != nil {
		return "", err
	}
	return code, nil
}

func (s *Service) resolveChannelPairing(ctx context.Context, channel, code, typ string, meta moltgate.Meta) error {
	if err := validChannel(channel); err != nil {
		return err
	}
	p, ok := s.Models.Channels.PendingCode(channel, strings.ToUpper(code))
	if !ok {
		return moltgate.Errorf(moltgate.ENOTFOUND, "no pending %s pairing with code %s", channel, code)
	}
	if !s.Now().Before(p.ExpiresAt) {
		return moltgate.Errorf(moltgate.ENOTFOUND, "pairing code %s has expired; the sender gets a new one when they write again", code)
	}
	e := moltgate.MustEvent(moltgate.ChannelStream(channel), typ, moltgate.ChannelPairingResolvedData{Channel: channel, SenderID: p.SenderID, Code: p.Code}, meta)
	_, err := s.append(ctx, true, e)
	return err
}

// ApproveChannelPairing implements moltgate.ChannelAccessService.
func (s *Service) ApproveChannelPairing(ctx context.Context, channel, code string, meta moltgate.Meta) error {
	return s.resolveChannelPairing(ctx, channel, code, moltgate.EventChannelPairingApproved, meta)
}

// RejectChannelPairing implements moltgate.ChannelAccessService.
func (s *Service) RejectChannelPairing(ctx context.Context, channel, code string, meta moltgate.Meta) error {
	return s.resolveChannelPairing(ctx, channel, code, moltgate.EventChannelPairingRejected, meta)
}

// ChangeAllowlist implements moltgate.ChannelAccessService.
func (s *Service) ChangeAllowlist(ctx context.Context, channel string, add, remove []string, meta moltgate.Meta) error {
	if err := validChannel(channel); err != nil {
		return err
	}
	if len(add) == 0 && len(remove) == 0 {
		return moltgate.Errorf(moltgate.EINVALID, "nothing to add or remove")
	}
	for _, id := range append(append([]string{}, add...), remove...) {
		if strings.TrimSpace(id) == "" || len(id) > 200 {
			return moltgate.Errorf(moltgate.EINVALID, "sender ids must be 1-200 characters")
		}
	}
	e := moltgate.MustEvent(moltgate.ChannelStream(channel), moltgate.EventChannelAllowlistChanged, moltgate.ChannelAllowlistChangedData{Channel: channel, Added: add, Removed: remove}, meta)
	_, err := s.append(ctx, true, e)
	return err
}
