package moltgate_test

import (
	"strings"
	"testing"
	"unicode/utf16"

	moltgate "github.com/moltgate/moltgate"
)

func units(s string) int { return len(utf16.Encode([]rune(s))) }

func TestSplitText(t *testing.T) {
	t.Run("short text is one piece", func(t *testing.T) {
		if got := moltgate.SplitText("hello", 4096); len(got) != 1 || got[0] != "hello" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("cuts between paragraphs first", func(t *testing.T) {
		p := strings.Repeat("word ", 150) // 750 chars
		text := strings.TrimSpace(p) + "\n\n" + strings.TrimSpace(p) + "\n\n" + strings.TrimSpace(p)
		got := moltgate.SplitText(text, 1600)
		if len(got) != 2 {
			t.Fatalf("got %d pieces, want 2", len(got))
		}
		if strings.Join(got, "\n\n") != text {
			t.Fatal("pieces joined at the paragraph break do not give the text back")
		}
	})
	t.Run("every piece within the limit, nothing lost", func(t *testing.T) {
		text := strings.Repeat("Sentence number one is here. Another one follows! ", 300) + strings.Repeat("x", 5000)
		got := moltgate.SplitText(text, 2000)
		var total int
		for _, p := range got {
			if units(p) > 2000 {
				t.Fatalf("piece of %d units", units(p))
			}
			total += len(strings.ReplaceAll(p, " ", ""))
		}
		if want := len(strings.ReplaceAll(strings.TrimSpace(text), " ", "")); total != want {
			t.Fatalf("non-space characters: got %d, want %d", total, want)
		}
	})
	t.Run("counts UTF-16 units, never splits a character", func(t *testing.T) {
		text := strings.Repeat("😀", 3000) // 2 units each
		got := moltgate.SplitText(text, 4096)
		for _, p := range got {
			if units(p) > 4096 || strings.ContainsRune(p, '\uFFFD') {
				t.Fatalf("bad piece: %d units", units(p))
			}
		}
		if strings.Join(got, "") != text {
			t.Fatal("emoji lost")
		}
	})
	t.Run("code fences are closed and reopened", func(t *testing.T) {
		code := "```go\n" + strings.Repeat("fmt.Println(\"hello world\")\n", 120) + "```"
		got := moltgate.SplitText("Here:\n"+code, 1000)
		if len(got) < 2 {
			t.Fatalf("got %d pieces", len(got))
		}
		for i, p := range got {
			if strings.Count(p, "```")%2 != 0 {
				t.Fatalf("piece %d has an unbalanced fence:\n%s", i, p)
			}
			if units(p) > 1000 {
				t.Fatalf("piece %d has %d units", i, units(p))
			}
		}
		if !strings.HasPrefix(got[1], "```go\n") {
			t.Fatalf("second piece does not reopen the fence: %q", got[1][:20])
		}
	})
}
