package discord

import (
	"regexp"
	"strings"

	"github.com/disgoorg/disgo/discord"
	"github.com/disgoorg/snowflake/v2"
	"github.com/moltgate/moltgate"
)

// bot is the bot's own identity, to recognise its mentions and its own
// messages.
type bot struct {
	id      snowflake.ID
	name    string
	mention *regexp.Regexp // <@id> or <@!id>, with the spaces around it
}

func newBot(id snowflake.ID, name string) bot {
	return bot{id: id, name: name, mention: regexp.MustCompile(`[ \t]*<@!?` + id.String() + `>[ \t]*`)}
}

// inbound turns a MESSAGE_CREATE into what the router reads. It reports
// false for messages the router must not see: those by bots (the bot
// itself included) and webhooks, system messages (joins, pins…), and
// messages with neither text nor files.
func (b bot) inbound(m discord.Message) (moltgate.InboundMessage, bool) {
	if m.Author.Bot || m.Author.System || m.WebhookID != nil || m.Author.ID == b.id {
		return moltgate.InboundMessage{}, false
	}
	if m.Type != discord.MessageTypeDefault && m.Type != discord.MessageTypeReply {
		return moltgate.InboundMessage{}, false
	}
	attachments := len(m.Attachments) + len(m.StickerItems)
	if m.ID == 0 || m.ChannelID == 0 || m.Author.ID == 0 || (m.Content == "" && attachments == 0) {
		return moltgate.InboundMessage{}, false
	}

	text, mentioned := b.stripMention(m.Content)
	for _, u := range m.Mentions {
		mentioned = mentioned || u.ID == b.id
	}
	var replyTo string
	if ref := m.MessageReference; ref != nil && ref.MessageID != nil && ref.Type == discord.MessageReferenceTypeDefault {
		replyTo = ref.MessageID.String()
		// A reply to the bot addresses it even with the reply's @ off.
		mentioned = mentioned || (m.ReferencedMessage != nil && m.ReferencedMessage.Author.ID == b.id)
	}
	name := m.Author.EffectiveName()
	if m.Member != nil && m.Member.Nick != nil && *m.Member.Nick != "" {
		name = *m.Member.Nick
	}
	return moltgate.InboundMessage{
		ChannelAddress: moltgate.ChannelAddress{
			Channel:   channelName,
			AccountID: b.id.String(),
			ChatID:    m.ChannelID.String(), // a thread is a channel of its own
		},
		MessageID:   m.ID.String(),
		SenderID:    m.Author.ID.String(),
		SenderName:  name,
		Text:        text,
		Direct:      m.GuildID == nil,
		Mentioned:   mentioned,
		ReplyToID:   replyTo,
		Attachments: attachments,
		SentAt:      m.CreatedAt,
	}, true
}

// stripMention removes the bot's mentions (<@id>, or <@!id> from older
// clients) from content, with the spaces around them, and reports whether
// there was one.
func (b bot) stripMention(content string) (string, bool) {
	if b.mention == nil || !b.mention.MatchString(content) {
		return content, false
	}
	return strings.TrimSpace(b.mention.ReplaceAllString(content, " ")), true
}
