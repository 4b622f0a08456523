package fakediscord

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

// Inbound is a message a person (or another bot) posts, for Inject.
type Inbound struct {
	// GuildID is the guild of a guild message; "" makes a DM.
	GuildID string
	// ChannelID defaults to the author's DM channel for a DM and to
	// GuildChannelID for a guild message.
	ChannelID  string
	AuthorID   string
	AuthorName string // username
	GlobalName string // display name, optional
	Nick       string // guild nickname, optional
	Bot        bool   // the author is a bot
	// Content is the text as Discord delivers it: a mention is written
	// "<@id>" (see Mention) and the fake lists mentioned users in
	// `mentions`, as Discord does.
	Content string
	// ReplyTo is the id of the message this one replies to (one the fake
	// knows: injected or posted by the bot). The reply carries
	// message_reference and referenced_message; the replied-to author is
	// in `mentions` only with ReplyMention, as when the person left the
	// reply's @ on.
	ReplyTo      string
	ReplyMention bool
	Attachments  int // files attached
	Stickers     int // stickers sent
	// Type is Discord's message type; 0 (DEFAULT) by default, 19 (REPLY)
	// with ReplyTo. Others are system messages (7: member joined, …).
	Type int
}

// Mention returns how Discord writes a mention of the bot in content.
func (s *Server) Mention() string { return "<@" + s.BotID + ">" }

// DM delivers a direct message from a user to the bot and returns its id.
func (s *Server) DM(userID, userName, text string) string {
	return s.Inject(Inbound{AuthorID: userID, AuthorName: userName, Content: text})
}

// GuildMessage delivers a message in GuildChannelID and returns its id.
// The bot is mentioned only if text contains Mention().
func (s *Server) GuildMessage(userID, userName, text string) string {
	return s.Inject(Inbound{GuildID: s.GuildID, AuthorID: userID, AuthorName: userName, Content: text})
}

// Inject dispatches MESSAGE_CREATE for in and returns the message id. The
// bot must have identified once: if its connection is down, the event
// waits in the session for a RESUME, as on Discord. Without a session it
// fails the test given to New, so call it (and DM, GuildMessage,
// InjectRaw, InjectMalformed) from that test, not from a subtest.
func (s *Server) Inject(in Inbound) string {
	s.tb.Helper()
	m := s.buildMessage(in)
	data, err := json.Marshal(m)
	if err != nil {
		s.tb.Fatalf("fakediscord: cannot encode message: %v", err)
	}
	s.InjectRaw("MESSAGE_CREATE", data)
	return m.ID
}

// InjectRaw dispatches an event of type t with d as its data, unchecked:
// for events the fake has no helper for, and for malformed payloads.
func (s *Server) InjectRaw(t string, d json.RawMessage) {
	s.tb.Helper()
	if err := s.dispatch(t, d); err != nil {
		s.tb.Fatalf("fakediscord: cannot dispatch %s: %v", t, err)
	}
}

// InjectMalformed dispatches a MESSAGE_CREATE whose data has the wrong
// types (an object where the id should be), as a payload no client can
// decode.
func (s *Server) InjectMalformed() {
	s.InjectRaw("MESSAGE_CREATE", json.RawMessage(`{"id":{"oops":true},"channel_id":12,"content":["not","text"],"author":"nobody"}`))
}

var mentionPattern = regexp.MustCompile(`<@!?(\d+)>`)

func (s *Server) buildMessage(in Inbound) message {
	s.mu.Lock()
	defer s.mu.Unlock()
	author := user{ID: in.AuthorID, Username: in.AuthorName, Discriminator: "0", Bot: in.Bot}
	if in.GlobalName != "" {
		author.GlobalName = &in.GlobalName
	}
	s.users[author.ID] = author
	channelID := in.ChannelID
	switch {
	case channelID != "":
		if _, ok := s.channels[channelID]; !ok {
			s.channels[channelID] = in.GuildID
		}
	case in.GuildID == "":
		channelID = s.dmChannelLocked(in.AuthorID)
	default:
		channelID = s.GuildChannelID
	}
	m := message{
		ID:           s.ids.next(),
		Type:         in.Type,
		ChannelID:    channelID,
		GuildID:      in.GuildID,
		Author:       author,
		Content:      in.Content,
		Timestamp:    discordTime(time.Now()),
		Mentions:     []user{},
		MentionRoles: []string{},
		Attachments:  []attachment{},
		Embeds:       []any{},
		Components:   []any{},
	}
	if in.GuildID != "" {
		m.Member = &member{Roles: []string{}, JoinedAt: discordTime(time.Now().Add(-24 * time.Hour))}
		if in.Nick != "" {
			m.Member.Nick = &in.Nick
		}
	}
	seen := map[string]bool{}
	for _, match := range mentionPattern.FindAllStringSubmatch(in.Content, -1) {
		if u, ok := s.users[match[1]]; ok && !seen[u.ID] {
			seen[u.ID] = true
			m.Mentions = append(m.Mentions, u)
		}
	}
	if in.ReplyTo != "" {
		if in.Type == 0 {
			m.Type = 19 // REPLY
		}
		m.MessageReference = &messageReference{Type: 0, MessageID: in.ReplyTo, ChannelID: channelID, GuildID: in.GuildID}
		if ref, ok := s.messages[in.ReplyTo]; ok {
			ref.ReferencedMessage = nil
			m.ReferencedMessage = &ref
			if in.ReplyMention && !seen[ref.Author.ID] {
				m.Mentions = append(m.Mentions, ref.Author)
			}
		}
	}
	for i := range in.Attachments {
		m.Attachments = append(m.Attachments, attachment{
			ID:          s.ids.next(),
			Filename:    fmt.Sprintf("file%d.png", i+1),
			Size:        1024,
			URL:         "https://cdn.discordapp.com/attachments/" + channelID + "/file.png",
			ProxyURL:    "https://media.discordapp.net/attachments/" + channelID + "/file.png",
			ContentType: "image/png",
		})
	}
	for i := range in.Stickers {
		m.StickerItems = append(m.StickerItems, stickerItem{ID: s.ids.next(), Name: fmt.Sprintf("sticker%d", i+1), FormatType: 1})
	}
	s.messages[m.ID] = m
	return m
}

// discordTime formats a time as Discord's ISO 8601 timestamps.
func discordTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000+00:00")
}

// The JSON shapes below are Discord's (API v10), limited to the fields a
// bot reads.

type user struct {
	ID            string  `json:"id"`
	Username      string  `json:"username"`
	Discriminator string  `json:"discriminator"`
	GlobalName    *string `json:"global_name"`
	Avatar        *string `json:"avatar"`
	Bot           bool    `json:"bot,omitempty"`
	PublicFlags   int     `json:"public_flags"`
}

type member struct {
	Nick     *string  `json:"nick"`
	Roles    []string `json:"roles"`
	JoinedAt string   `json:"joined_at"`
	Deaf     bool     `json:"deaf"`
	Mute     bool     `json:"mute"`
	Flags    int      `json:"flags"`
}

type attachment struct {
	ID          string `json:"id"`
	Filename    string `json:"filename"`
	Size        int    `json:"size"`
	URL         string `json:"url"`
	ProxyURL    string `json:"proxy_url"`
	ContentType string `json:"content_type"`
}

type stickerItem struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	FormatType int    `json:"format_type"`
}

type messageReference struct {
	Type            int    `json:"type"`
	MessageID       string `json:"message_id"`
	ChannelID       string `json:"channel_id,omitempty"`
	GuildID         string `json:"guild_id,omitempty"`
	FailIfNotExists *bool  `json:"fail_if_not_exists,omitempty"`
}

type message struct {
	ID                string            `json:"id"`
	Type              int               `json:"type"`
	ChannelID         string            `json:"channel_id"`
	GuildID           string            `json:"guild_id,omitempty"`
	Author            user              `json:"author"`
	Member            *member           `json:"member,omitempty"`
	Content           string            `json:"content"`
	Timestamp         string            `json:"timestamp"`
	EditedTimestamp   *string           `json:"edited_timestamp"`
	TTS               bool              `json:"tts"`
	MentionEveryone   bool              `json:"mention_everyone"`
	Mentions          []user            `json:"mentions"`
	MentionRoles      []string          `json:"mention_roles"`
	Attachments       []attachment      `json:"attachments"`
	Embeds            []any             `json:"embeds"`
	Components        []any             `json:"components"`
	Pinned            bool              `json:"pinned"`
	Flags             int               `json:"flags"`
	StickerItems      []stickerItem     `json:"sticker_items,omitempty"`
	MessageReference  *messageReference `json:"message_reference,omitempty"`
	ReferencedMessage *message          `json:"referenced_message,omitempty"`
}
