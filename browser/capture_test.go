package browser

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	moltgate "github.com/moltgate/moltgate"
)

const colorPage = `<!doctype html><body style="margin:0;background:rgb(10,200,30)">
<div style="position:absolute;left:100px;top:50px;width:40px;height:40px;background:rgb(250,10,10)"></div>
<div style="height:%dpx"></div>`

func decodePNG(t *testing.T, b []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	return img
}

func rgb(c color.Color) [3]uint32 {
	r, g, b, _ := c.RGBA()
	return [3]uint32{r >> 8, g >> 8, b >> 8}
}

func TestScreenshot(t *testing.T) {
	m := sharedManager(t)
	site := pages(t, map[string]string{
		"/short": fmt.Sprintf(colorPage, 10),
		"/tall":  fmt.Sprintf(colorPage, 3000),
	})
	ctx := testContext(t)

	shot, err := Screenshot(ctx, m, site.URL+"/short", ScreenshotOptions{Width: 640, Height: 480})
	if err != nil {
		t.Fatal(err)
	}
	img := decodePNG(t, shot)
	if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 480 {
		t.Errorf("size %v, want 640x480", b)
	}
	if got := rgb(img.At(5, 5)); got != [3]uint32{10, 200, 30} {
		t.Errorf("background pixel %v, want rgb(10,200,30)", got)
	}
	if got := rgb(img.At(120, 70)); got != [3]uint32{250, 10, 10} {
		t.Errorf("box pixel %v, want rgb(250,10,10)", got)
	}

	full, err := Screenshot(ctx, m, site.URL+"/tall", ScreenshotOptions{Width: 800, Height: 600, FullPage: true, Wait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if b := decodePNG(t, full).Bounds(); b.Dx() != 800 || b.Dy() != 3000 {
		t.Errorf("full page %v, want 800x3000", b)
	}
	view, err := Screenshot(ctx, m, site.URL+"/tall", ScreenshotOptions{Width: 800, Height: 600})
	if err != nil {
		t.Fatal(err)
	}
	if b := decodePNG(t, view).Bounds(); b.Dx() != 800 || b.Dy() != 600 {
		t.Errorf("viewport of a tall page %v, want 800x600", b)
	}
	def, err := Screenshot(ctx, m, site.URL+"/short", ScreenshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b := decodePNG(t, def).Bounds(); b.Dx() != DefaultWidth || b.Dy() != DefaultHeight {
		t.Errorf("default size %v", b)
	}

	for _, c := range []struct {
		url  string
		opts ScreenshotOptions
	}{
		{"file:///etc/passwd", ScreenshotOptions{}},
		{site.URL + "/short", ScreenshotOptions{Width: 0, Height: 100}},
		{site.URL + "/short", ScreenshotOptions{Width: MaxViewport + 1, Height: 100}},
	} {
		if _, err := Screenshot(ctx, m, c.url, c.opts); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("Screenshot(%s, %+v): %v", c.url, c.opts, err)
		}
	}
}

// probe reads a video's stream with ffprobe, counting its frames.
type probe struct {
	Codec  string `json:"codec_name"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Frames string `json:"nb_read_frames"`
	Rate   string `json:"r_frame_rate"`
}

func ffprobe(t *testing.T, path string) probe {
	t.Helper()
	out, err := exec.Command("/usr/bin/ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames,r_frame_rate", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var v struct{ Streams []probe }
	if err := json.Unmarshal(out, &v); err != nil || len(v.Streams) != 1 {
		t.Fatalf("ffprobe %s: %s", path, out)
	}
	return v.Streams[0]
}

// frameColor decodes frame n of a video and returns its centre pixel.
func frameColor(t *testing.T, path string, n int) [3]uint32 {
	t.Helper()
	out, err := exec.Command("/usr/bin/ffmpeg", "-v", "error", "-i", path, "-vf", fmt.Sprintf(`select=eq(n\,%d)`, n),
		"-vframes", "1", "-f", "image2pipe", "-c:v", "png", "-").Output()
	if err != nil {
		t.Fatalf("frame %d of %s: %v", n, path, err)
	}
	img := decodePNG(t, out)
	b := img.Bounds()
	return rgb(img.At(b.Dx()/2, b.Dy()/2))
}

func near(a, b [3]uint32) bool {
	for i := range a {
		if d := int(a[i]) - int(b[i]); d > 40 || d < -40 {
			return false
		}
	}
	return true
}

var (
	red  = [3]uint32{220, 20, 20}
	blue = [3]uint32{20, 20, 220}
)

func twoPages(t *testing.T) []string {
	site := pages(t, map[string]string{
		"/red":  `<body style="margin:0;background:rgb(220,20,20);height:2400px">red</body>`,
		"/blue": `<body style="margin:0;background:rgb(20,20,220)">blue</body>`,
	})
	return []string{site.URL + "/red", site.URL + "/blue"}
}

func TestVideo_MP4(t *testing.T) {
	m := sharedManager(t)
	urls := twoPages(t)
	out := filepath.Join(t.TempDir(), "two pages.mp4")
	var calls []int
	opts := VideoOptions{Width: 640, Height: 360, FPS: 10, PerPage: 1200 * time.Millisecond, Scroll: true}
	if err := Video(testContext(t), m, urls, opts, out, func(done, total int) {
		if total != 24 {
			t.Errorf("progress total %d, want 24", total)
		}
		calls = append(calls, done)
	}); err != nil {
		t.Fatal(err)
	}
	p := ffprobe(t, out)
	if p.Codec != "h264" || p.Width != 640 || p.Height != 360 || p.Frames != "24" || p.Rate != "10/1" {
		t.Errorf("ffprobe: %+v, want h264 640x360, 24 frames at 10/1", p)
	}
	if len(calls) != 24 || calls[0] != 1 || calls[23] != 24 {
		t.Errorf("progress calls %v", calls)
	}
	if c := frameColor(t, out, 3); !near(c, red) {
		t.Errorf("frame 3 is %v, want the red page", c)
	}
	if c := frameColor(t, out, 20); !near(c, blue) {
		t.Errorf("frame 20 is %v, want the blue page", c)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestVideo_WebMWithoutFFmpeg(t *testing.T) {
	m := sharedManager(t)
	urls := twoPages(t)
	t.Setenv("PATH", t.TempDir()) // no ffmpeg, no ffprobe
	dir := t.TempDir()
	ctx := testContext(t)

	// An .mp4 needs ffmpeg, and the error says what to do instead.
	err := Video(ctx, m, urls, VideoOptions{}, filepath.Join(dir, "x.mp4"), nil)
	if moltgate.ErrorCode(err) != moltgate.EUNAVAILABLE || !strings.Contains(err.Error(), "ffmpeg") || !strings.Contains(err.Error(), ".webm") {
		t.Errorf("an .mp4 without ffmpeg: %v", err)
	}

	out := filepath.Join(dir, "two.webm")
	if err := Video(ctx, m, urls, VideoOptions{Width: 320, Height: 240, FPS: 8, PerPage: time.Second}, out, nil); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte{0x1A, 0x45, 0xDF, 0xA3}) || !bytes.Contains(data[:64], []byte("webm")) {
		t.Errorf("no EBML header with DocType webm: % x", data[:min(len(data), 40)])
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files in the output dir: %v", entries)
	}

	p := ffprobe(t, out)
	if p.Codec != "vp8" || p.Width != 320 || p.Height != 240 || p.Frames != "16" {
		t.Errorf("ffprobe: %+v, want vp8 320x240 with 16 frames", p)
	}
	if c := frameColor(t, out, 2); !near(c, red) {
		t.Errorf("frame 2 is %v, want the red page", c)
	}
	if c := frameColor(t, out, 12); !near(c, blue) {
		t.Errorf("frame 12 is %v, want the blue page", c)
	}

	// Chromium plays it to the end.
	player := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v.webm" {
			http.ServeFile(w, r, out)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<!doctype html><video id="v" src="/v.webm" muted></video>`)
	}))
	defer player.Close()
	tab, ctx := openTab(t, m)
	if _, err := tab.Navigate(ctx, player.URL+"/"); err != nil {
		t.Fatal(err)
	}
	got, err := run(tab, ctx, time.Minute, "play the video", chromedp.Evaluate[string](`new Promise((resolve, reject) => {
		const v = document.getElementById("v");
		v.onerror = () => reject(new Error("video error " + (v.error && v.error.message)));
		const go = () => { v.onended = () => resolve(v.videoWidth + "x" + v.videoHeight + " " + v.duration.toFixed(2) + "s ended"); v.play().catch(reject) };
		if (v.readyState >= 1) go(); else v.onloadedmetadata = go;
	})`, chromedp.EvalAwaitPromise))
	if err != nil || got != "320x240 2.00s ended" {
		t.Errorf("Chromium playing the WebM: %q, %v", got, err)
	}
}

func TestVideo_BadInput(t *testing.T) {
	m := sharedManager(t)
	urls := twoPages(t)
	dir := t.TempDir()
	ctx := testContext(t)
	for _, c := range []struct {
		name string
		urls []string
		opts VideoOptions
		out  string
	}{
		{"no URLs", nil, VideoOptions{}, "v.webm"},
		{"a file URL", []string{"file:///etc/passwd"}, VideoOptions{}, "v.webm"},
		{"an unknown format", urls, VideoOptions{}, "v.gif"},
		{"no extension", urls, VideoOptions{}, "video"},
		{"fps too high", urls, VideoOptions{FPS: MaxFPS + 1}, "v.webm"},
		{"negative fps", urls, VideoOptions{FPS: -1}, "v.webm"},
		{"negative duration", urls, VideoOptions{PerPage: -time.Second}, "v.webm"},
		{"too long", urls, VideoOptions{PerPage: MaxPerPage + time.Second}, "v.webm"},
		{"too wide", urls, VideoOptions{Width: MaxViewport + 2, Height: 100}, "v.webm"},
		{"negative wait", urls, VideoOptions{Wait: -time.Second}, "v.webm"},
	} {
		if err := Video(ctx, m, c.urls, c.opts, filepath.Join(dir, c.out), nil); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("%s: %v", c.name, err)
		}
	}

	// A page that does not load fails the video and keeps the old file.
	out := filepath.Join(dir, "kept.webm")
	os.WriteFile(out, []byte("old"), 0o644)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close()
	err := Video(ctx, m, []string{urls[0], closed}, VideoOptions{Width: 320, Height: 240, FPS: 5, PerPage: 200 * time.Millisecond}, out, nil)
	if err == nil || !strings.Contains(err.Error(), "net::ERR_CONNECTION_REFUSED") {
		t.Errorf("a video with a page that does not load: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "old" {
		t.Errorf("the old file became %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files left: %v", entries)
	}
}

func TestFramesPerPage(t *testing.T) {
	for _, c := range []struct {
		opts VideoOptions
		want int
	}{
		{VideoOptions{}, 30},
		{VideoOptions{FPS: 10, PerPage: 1250 * time.Millisecond}, 13},
		{VideoOptions{FPS: 24, PerPage: 2 * time.Second}, 48},
		{VideoOptions{FPS: 10, PerPage: time.Millisecond}, 1},
	} {
		if got := c.opts.FramesPerPage(); got != c.want {
			t.Errorf("%+v: %d frames per page, want %d", c.opts, got, c.want)
		}
	}
}
