package main

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func browserEnv() Env { return EnvFromMap(map[string]string{"CHROMIUM_PATH": "/usr/bin/chromium"}) }

func TestBrowserCLI(t *testing.T) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<body style="margin:0;background:#123456;height:1500px">%s</body>`, r.URL.Path)
	}))
	defer site.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()

	t.Run("Screenshot", func(t *testing.T) {
		out := filepath.Join(dir, "shot.png")
		var stdout, stderr bytes.Buffer
		// Flags after the arguments, as the usage shows them.
		err := run(ctx, browserEnv(), []string{"browser", "screenshot", site.URL + "/a", out, "--width", "320", "--height", "200", "--full-page"}, &stdout, &stderr)
		if err != nil {
			t.Fatalf("%v; stderr: %s", err, stderr.String())
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		img, err := png.Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		if b := img.Bounds(); b.Dx() != 320 || b.Dy() != 1500 {
			t.Errorf("screenshot %v, want 320x1500", b)
		}
		if !strings.HasPrefix(stdout.String(), "wrote "+out+" (") {
			t.Errorf("stdout %q", stdout.String())
		}
		if stderr.Len() != 0 {
			t.Errorf("stderr is not a terminal, yet: %q", stderr.String())
		}
	})

	t.Run("Video", func(t *testing.T) {
		out := filepath.Join(dir, "pages.webm")
		var stdout, stderr bytes.Buffer
		err := run(ctx, browserEnv(), []string{"browser", "video", "--fps", "5", site.URL + "/1, " + site.URL + "/2", out, "--per-page", "1s", "--scroll", "--width", "320", "--height", "240"}, &stdout, &stderr)
		if err != nil {
			t.Fatalf("%v; stderr: %s", err, stderr.String())
		}
		data, err := os.ReadFile(out)
		if err != nil || !bytes.HasPrefix(data, []byte{0x1A, 0x45, 0xDF, 0xA3}) {
			t.Fatalf("not a WebM: %v", err)
		}
		if !strings.Contains(stdout.String(), "10 frames at 5 fps from 2 pages") {
			t.Errorf("stdout %q", stdout.String())
		}
		if strings.Contains(stderr.String(), "\r") {
			t.Errorf("progress on a stderr that is not a terminal: %q", stderr.String())
		}
	})

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{"browser"}, "needs a subcommand"},
		{"unknown subcommand", []string{"browser", "pdf"}, `unknown browser command "pdf"`},
		{"missing output", []string{"browser", "screenshot", site.URL}, "usage: moltgate browser screenshot"},
		{"not a png", []string{"browser", "screenshot", site.URL, filepath.Join(dir, "x.jpg")}, "name it .png"},
		{"bad flag", []string{"browser", "video", site.URL, filepath.Join(dir, "x.webm"), "--fps", "ten"}, "invalid value"},
		{"bad fps", []string{"browser", "video", site.URL, filepath.Join(dir, "x.webm"), "--fps", "500"}, "frame rate of 500"},
		{"bad format", []string{"browser", "video", site.URL, filepath.Join(dir, "x.avi")}, ".mp4 (encoded by ffmpeg) or .webm"},
		{"no URLs", []string{"browser", "video", " , ", filepath.Join(dir, "x.webm")}, "1 to 50 URLs"},
		{"a file URL", []string{"browser", "screenshot", "file:///etc/passwd", filepath.Join(dir, "x.png")}, "only http:// and https://"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(ctx, browserEnv(), c.args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.webm")); !os.IsNotExist(err) {
		t.Errorf("a failed command left its output: %v", err)
	}

	var stdout bytes.Buffer
	err := run(ctx, EnvFromMap(map[string]string{"BROWSER_CDP_URL": "ftp://nope"}), []string{"browser", "screenshot", site.URL, filepath.Join(dir, "y.png")}, &stdout, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "BROWSER_CDP_URL") {
		t.Errorf("a bad BROWSER_CDP_URL: %v", err)
	}
}
