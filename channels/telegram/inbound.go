package telegram

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/go-telegram/bot/models"
	"github.com/moltgate/moltgate"
)

// inbound turns a Telegram message into what the router reads. It reports
// false for what is not a person's message to answer: messages from bots,
// without a sender (channel posts), or with neither text nor attachment
// (service messages such as "X joined the group").
func (a *Adapter) inbound(m *models.Message) (moltgate.InboundMessage, bool) {
	if m == nil || m.From == nil || m.From.IsBot {
		return moltgate.InboundMessage{}, false
	}
	text, entities := m.Text, m.Entities
	if text == "" {
		text, entities = m.Caption, m.CaptionEntities
	}
	attachments := countAttachments(m)
	if strings.TrimSpace(text) == "" && attachments == 0 {
		return moltgate.InboundMessage{}, false
	}
	a.mu.Lock()
	botID, botUser := a.botID, a.botUser
	a.mu.Unlock()

	in := moltgate.InboundMessage{
		ChannelAddress: moltgate.ChannelAddress{
			Channel:   ChannelName,
			AccountID: strconv.FormatInt(botID, 10),
			ChatID:    strconv.FormatInt(m.Chat.ID, 10),
		},
		MessageID:   strconv.Itoa(m.ID),
		SenderID:    strconv.FormatInt(m.From.ID, 10),
		SenderName:  displayName(m.From),
		Direct:      m.Chat.Type == models.ChatTypePrivate,
		Attachments: attachments,
		SentAt:      time.Unix(int64(m.Date), 0).UTC(),
	}
	// message_thread_id is also set on replies in groups without topics;
	// only a topic is a place to answer in.
	topic := m.IsTopicMessage && m.MessageThreadID != 0
	if topic {
		in.ThreadID = strconv.Itoa(m.MessageThreadID)
	}
	// In a topic, a message that answers nothing in particular still
	// replies to the topic's first message: that is not a reply.
	if r := m.ReplyToMessage; r != nil && !(topic && r.ID == m.MessageThreadID) {
		in.ReplyToID = strconv.Itoa(r.ID)
		in.Mentioned = r.From != nil && r.From.ID == botID
	}
	text, mentioned := stripMentions(text, entities, botUser)
	in.Text = text
	in.Mentioned = in.Mentioned || mentioned
	return in, true
}

// countAttachments counts the message's parts that are not text.
func countAttachments(m *models.Message) int {
	n := 0
	for _, present := range []bool{
		len(m.Photo) > 0,                        // the sizes of one photo
		m.Document != nil && m.Animation == nil, // Telegram sets document too for an animation
		m.Animation != nil, m.Sticker != nil, m.Voice != nil, m.Video != nil, m.VideoNote != nil, m.Audio != nil,
	} {
		if present {
			n++
		}
	}
	return n
}

func displayName(u *models.User) string {
	if name := strings.TrimSpace(u.FirstName + " " + u.LastName); name != "" {
		return name
	}
	if u.Username != "" {
		return "@" + u.Username
	}
	return ""
}

// stripMentions removes the bot's @mentions from text (and the "@bot" of a
// "/command@bot") and reports whether there were any. Telegram gives
// entity offsets in UTF-16 code units.
func stripMentions(text string, entities []models.MessageEntity, botUser string) (string, bool) {
	if botUser == "" {
		return text, false
	}
	units := utf16.Encode([]rune(text))
	type cut struct {
		from, to int
		mention  bool // a whole @mention: also drop a ':' or ',' and spaces after it
	}
	var cuts []cut
	for _, e := range entities {
		if e.Offset < 0 || e.Length <= 0 || e.Offset+e.Length > len(units) {
			continue
		}
		part := string(utf16.Decode(units[e.Offset : e.Offset+e.Length]))
		switch e.Type {
		case models.MessageEntityTypeMention:
			if strings.EqualFold(part, "@"+botUser) {
				cuts = append(cuts, cut{from: e.Offset, to: e.Offset + e.Length, mention: true})
			}
		case models.MessageEntityTypeBotCommand:
			if at := strings.LastIndexByte(part, '@'); at >= 0 && strings.EqualFold(part[at+1:], botUser) {
				cuts = append(cuts, cut{from: e.Offset + len(utf16.Encode([]rune(part[:at]))), to: e.Offset + e.Length})
			}
		}
	}
	if len(cuts) == 0 {
		return text, false
	}
	// Cut from the end, so earlier offsets stay right.
	slices.SortFunc(cuts, func(x, y cut) int { return y.from - x.from })
	for _, c := range cuts {
		end := c.to
		if c.mention {
			if end < len(units) && (units[end] == ':' || units[end] == ',') {
				end++
			}
			for end < len(units) && units[end] == ' ' {
				end++
			}
		}
		units = slices.Delete(units, c.from, end)
	}
	return strings.TrimSpace(string(utf16.Decode(units))), true
}
