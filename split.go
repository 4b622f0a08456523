package moltgate

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// SplitText cuts text into pieces of at most limit UTF-16 code units (how
// Telegram counts its 4,096; Discord's 2,000 and Slack's limits are in
// characters, which are never more), preferring to cut between paragraphs,
// then lines, then sentences, then words, and only as a last resort inside
// a word. A Markdown code fence that a cut falls inside is closed at the
// end of one piece and opened again at the start of the next, so each
// piece renders on its own.
func SplitText(text string, limit int) []string {
	text = strings.TrimSpace(text)
	if limit < 16 {
		limit = 16
	}
	var out []string
	fence := "" // the fence line open at the start of the remaining text, if any
	for text != "" {
		prefix := ""
		if fence != "" {
			prefix = fence + "\n"
		}
		if utf16Len(prefix)+utf16Len(text) <= limit {
			out = append(out, prefix+text)
			break
		}
		// Leave room for the fence to be reopened and closed.
		room := limit - utf16Len(prefix) - len("\n```")
		cut := cutPoint(text, room)
		piece := strings.TrimRight(text[:cut], " \n")
		text = strings.TrimLeft(text[cut:], " \n")
		open := openFence(fence, piece)
		if open != "" {
			piece += "\n```"
		}
		out = append(out, prefix+piece)
		fence = open
	}
	return out
}

// cutPoint returns a byte offset into text at which the first piece, of at
// most room UTF-16 units, ends.
func cutPoint(text string, room int) int {
	max := 0 // the byte offset where room runs out
	for units := 0; max < len(text); {
		r, size := utf8.DecodeRuneInString(text[max:])
		n := utf16.RuneLen(r)
		if n < 0 {
			n = 1
		}
		if units+n > room {
			break
		}
		units += n
		max += size
	}
	if max == 0 {
		_, size := utf8.DecodeRuneInString(text)
		return size // a limit smaller than one character: still make progress
	}
	window := text[:max]
	for _, sep := range []string{"\n\n", "\n", ". ", "! ", "? ", " "} {
		// Only a cut in the second half of the window is worth it: otherwise
		// a late separator produces a run of tiny pieces.
		if i := strings.LastIndex(window, sep); i > max/2 {
			return i + len(sep)
		}
	}
	return max
}

// openFence returns the fence line still open after piece, given the one
// open before it ("" when none).
func openFence(open, piece string) string {
	for _, line := range strings.Split(piece, "\n") {
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "```") {
			continue
		}
		if open == "" {
			open = t
		} else if t == "```" {
			open = ""
		}
	}
	return open
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if l := utf16.RuneLen(r); l > 0 {
			n += l
		} else {
			n++
		}
	}
	return n
}
