package commands

import (
	"context"
	"crypto/rand"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	moltgate "github.com/moltgate/moltgate"
)

// ChannelPairingTTL is how long a chat-platform pairing code stays valid.
const ChannelPairingTTL = time.Hour

// MaxPendingPerChannel is how many strangers may wait with a code on one
// channel: more are told to try later, so a flood of DMs cannot fill the
// owner's queue.
const MaxPendingPerChannel = 3

func validChannel(ch string) error {
	if slices.Contains(moltgate.ChannelNames, ch) {
		return nil
	}
	return moltgate.Errorf(moltgate.EINVALID, "unknown channel %q: use telegram, discord or slack", ch)
}

// PairingAlphabet has no look-alike characters (no 0/O, 1/I).
const PairingAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// pairingCode is 8 characters from PairingAlphabet. 256 is a multiple of
// the alphabet's 32 letters, so every letter is equally likely.
func pairingCode() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = PairingAlphabet[int(b[i])%len(PairingAlphabet)]
	}
	return string(b[:])
}

// truncate shortens untrusted display text (a stranger's chosen name).
func truncate(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "")
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// RequestChannelPairing implements moltgate.ChannelAccessService.
func (s *Service) RequestChannelPairing(ctx context.Context, channel, senderID, senderName string, origin *moltgate.ChannelAddress, meta moltgate.Meta) (string, bool, error) {
	if err := validChannel(channel); err != nil {
		return "", false, err
	}
	if strings.TrimSpace(senderID) == "" || len(senderID) > 200 {
		return "", false, moltgate.Errorf(moltgate.EINVALID, "senderId must be 1-200 characters")
	}
	senderName = truncate(senderName, MaxDeviceField)
	var code string
	var created bool
	_, err := s.decide(ctx, false, func() ([]moltgate.Event, error) {
		now := s.Now()
		version := s.Models.Channels.StreamVersion(channel) // before the state: a newer state then only causes a retry
		pending := s.Models.Channels.Pending(channel, now)
		for _, p := range pending {
			if p.SenderID == senderID {
				code, created = p.Code, false
				return nil, nil // one live code per sender
			}
		}
		if len(pending) >= MaxPendingPerChannel {
			return nil, moltgate.Errorf(moltgate.EUNAVAILABLE, "%d people are already waiting for approval on %s: the owner must approve or reject them first", len(pending), channel)
		}
		code, created = pairingCode(), true
		return []moltgate.Event{at(moltgate.MustEvent(moltgate.ChannelStream(channel), moltgate.EventChannelPairingRequested, moltgate.ChannelPairingRequestedData{
			Channel: channel, SenderID: senderID, SenderName: senderName, Code: code, ExpiresAtMs: now.Add(ChannelPairingTTL).UnixMilli(), Origin: origin,
		}, meta), version+1)}, nil
	})
	if err != nil {
		return "", false, err
	}
	return code, created, nil
}

// resolveChannelPairing decides on a code: approved or rejected once; the
// same decision again answers with the first, the other one is a conflict.
func (s *Service) resolveChannelPairing(ctx context.Context, channel, code string, approve, notify bool, meta moltgate.Meta) (moltgate.PendingSender, error) {
	if err := validChannel(channel); err != nil {
		return moltgate.PendingSender{}, err
	}
	code = strings.ToUpper(strings.TrimSpace(code))
	typ := moltgate.EventChannelPairingRejected
	if approve {
		typ = moltgate.EventChannelPairingApproved
	}
	var sender moltgate.PendingSender
	_, err := s.decide(ctx, true, func() ([]moltgate.Event, error) {
		version := s.Models.Channels.StreamVersion(channel)
		p, ok := s.Models.Channels.PendingCode(channel, code)
		if !ok {
			prev, wasApproved, decided := s.Models.Channels.Decided(channel, code)
			switch {
			case !decided:
				return nil, moltgate.Errorf(moltgate.ENOTFOUND, "no pending %s pairing with code %s", channel, code)
			case wasApproved != approve:
				state := map[bool]string{true: "approved", false: "rejected"}[wasApproved]
				return nil, &moltgate.Error{Code: moltgate.ECONFLICT, Message: "pairing code " + code + " was already " + state, Details: map[string]any{"state": state}}
			}
			sender = prev
			return nil, nil
		}
		if !s.Now().Before(p.ExpiresAt) {
			return nil, moltgate.Errorf(moltgate.ENOTFOUND, "pairing code %s has expired; the sender gets a new one when they write again", code)
		}
		sender = p
		return []moltgate.Event{at(moltgate.MustEvent(moltgate.ChannelStream(channel), typ, moltgate.ChannelPairingResolvedData{
			Channel: channel, SenderID: p.SenderID, Code: p.Code, Notify: approve && notify,
		}, meta), version+1)}, nil
	})
	if err != nil {
		return moltgate.PendingSender{}, err
	}
	return sender, nil
}

// ApproveChannelPairing implements moltgate.ChannelAccessService.
func (s *Service) ApproveChannelPairing(ctx context.Context, channel, code string, notify bool, meta moltgate.Meta) (moltgate.PendingSender, error) {
	return s.resolveChannelPairing(ctx, channel, code, true, notify, meta)
}

// RejectChannelPairing implements moltgate.ChannelAccessService.
func (s *Service) RejectChannelPairing(ctx context.Context, channel, code string, meta moltgate.Meta) (moltgate.PendingSender, error) {
	return s.resolveChannelPairing(ctx, channel, code, false, false, meta)
}

// ChangeAllowlist implements moltgate.ChannelAccessService. It appends
// without an expected version because it decides on nothing it read: each
// id is added or removed as asked, and of two changes to one id the later
// in the log wins. Its event still moves the channel stream's version on,
// so a pairing decision in flight decides again.
func (s *Service) ChangeAllowlist(ctx context.Context, channel string, add, remove []string, meta moltgate.Meta) error {
	if err := validChannel(channel); err != nil {
		return err
	}
	if len(add) == 0 && len(remove) == 0 {
		return moltgate.Errorf(moltgate.EINVALID, "nothing to add or remove")
	}
	if len(add)+len(remove) > 1000 {
		return moltgate.Errorf(moltgate.EINVALID, "at most 1000 ids at once")
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
