package api

import (
	"strings"
	"testing"
)

// A page the CSP would break is refused when it is assembled (at start-up,
// in every test), not found broken in a browser.
func TestPageWithCSP_Refuses(t *testing.T) {
	for name, c := range map[string]struct {
		page    string
		scripts map[string]string
		want    string
	}{
		"a style attribute":        {`<style>p{}</style><p style="color:red">x</p>`, nil, "style attribute"},
		"a script loaded":          {`<script src="x.js"></script>`, nil, "<script> tags"},
		"a style with attributes":  {`<style media="print">p{}</style>`, nil, "<style> tags"},
		"a script to inline twice": {`<script src="a.js"></script><script src="a.js"></script>`, map[string]string{"a.js": "1"}, "exactly one"},
		"a script closing itself":  {`<script src="a.js"></script>`, map[string]string{"a.js": `"</SCRIPT>"`}, "contains </script"},
	} {
		if _, _, err := pageWithCSP(c.page, c.scripts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %q", name, err, c.want)
		}
	}
	page, csp, err := pageWithCSP(`<style>p{}</style><script src="a.js"></script>`, map[string]string{"a.js": "go()"})
	if err != nil || page != `<style>p{}</style><script>go()</script>` || !strings.Contains(csp, "script-src 'sha256-") {
		t.Fatalf("a good page: %q %q %v", page, csp, err)
	}
}
