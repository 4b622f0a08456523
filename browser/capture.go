package browser

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	moltgate "github.com/moltgate/moltgate"
)

// Defaults and limits of VideoOptions.
const (
	DefaultVideoWidth  = 1280
	DefaultVideoHeight = 720
	DefaultFPS         = 10
	DefaultPerPage     = 3 * time.Second
	MaxFPS             = 60
	MaxPerPage         = 10 * time.Minute
	MaxVideoURLs       = 50
)

// VideoOptions shape a video.
type VideoOptions struct {
	// Width and Height of the video and the viewport. Zero means 1280×720.
	Width, Height int
	// FPS is the frame rate. Zero means DefaultFPS.
	FPS int
	// PerPage is how long each page is recorded. Zero means DefaultPerPage.
	PerPage time.Duration
	// Scroll scrolls each page from top to bottom while it is recorded.
	Scroll bool
	// Wait lets each page settle after it loads, before its recording.
	Wait time.Duration
}

func (o VideoOptions) withDefaults() VideoOptions {
	if o.Width == 0 && o.Height == 0 {
		o.Width, o.Height = DefaultVideoWidth, DefaultVideoHeight
	}
	if o.FPS == 0 {
		o.FPS = DefaultFPS
	}
	if o.PerPage == 0 {
		o.PerPage = DefaultPerPage
	}
	return o
}

func (o VideoOptions) check() error {
	if err := checkViewport(o.Width, o.Height); err != nil {
		return err
	}
	if o.FPS < 1 || o.FPS > MaxFPS {
		return moltgate.Errorf(moltgate.EINVALID, "a frame rate of %d: it must be 1 to %d", o.FPS, MaxFPS)
	}
	if o.PerPage <= 0 || o.PerPage > MaxPerPage {
		return moltgate.Errorf(moltgate.EINVALID, "%s per page: it must be more than 0 and at most %s", o.PerPage, MaxPerPage)
	}
	if o.Wait < 0 {
		return moltgate.Errorf(moltgate.EINVALID, "a negative wait: %s", o.Wait)
	}
	return nil
}

// FramesPerPage is the number of frames each page gets: PerPage × FPS,
// rounded, at least one. The video has exactly this many per page, however
// fast the browser paints.
func (o VideoOptions) FramesPerPage() int {
	o = o.withDefaults()
	return max(1, int(math.Round(o.PerPage.Seconds()*float64(o.FPS))))
}

// Video records the pages one after the other into out: an .mp4 (encoded by
// ffmpeg) or a .webm (encoded by Chromium itself, VP8 through WebCodecs, so
// it needs nothing but the browser).
//
// Frames come from the page's screencast (Page.startScreencast, each frame
// acknowledged) and are sampled at FPS: each frame shows the latest picture
// the page painted, so a static page repeats its frame and the count is
// always FramesPerPage per page. progress, when not nil, is told after each
// frame. out is replaced only when the video is complete.
func Video(ctx context.Context, m *Manager, urls []string, opts VideoOptions, out string, progress func(done, total int)) error {
	opts = opts.withDefaults()
	if err := opts.check(); err != nil {
		return err
	}
	if len(urls) == 0 || len(urls) > MaxVideoURLs {
		return moltgate.Errorf(moltgate.EINVALID, "a video needs 1 to %d URLs, got %d", MaxVideoURLs, len(urls))
	}
	for _, u := range urls {
		if _, err := checkNavigable(u); err != nil {
			return err
		}
	}
	ext := strings.ToLower(filepath.Ext(out))
	var ffmpeg string
	switch ext {
	case ".mp4":
		var err error
		if ffmpeg, err = exec.LookPath("ffmpeg"); err != nil {
			return moltgate.Errorf(moltgate.EUNAVAILABLE, "cannot write %s: ffmpeg is not installed (Debian: apt-get install ffmpeg); a .webm output needs only Chromium", out)
		}
	case ".webm":
	default:
		return moltgate.Errorf(moltgate.EINVALID, "cannot write %q: the name must end in .mp4 (encoded by ffmpeg) or .webm (encoded by Chromium)", out)
	}

	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*"+ext)
	if err != nil {
		return fmt.Errorf("cannot write the video: %w", err)
	}
	tmpName := tmp.Name()
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()

	tab, err := m.OpenTab(ctx)
	if err != nil {
		return err
	}
	defer tab.Close()
	if err := tab.SetViewport(ctx, opts.Width, opts.Height); err != nil {
		return err
	}

	var sink frameSink
	if ext == ".mp4" {
		tmp.Close()
		sink, err = startFFmpeg(ctx, ffmpeg, tmpName, opts)
	} else {
		sink, err = startWebM(ctx, m, tmp, opts)
	}
	if err != nil {
		return err
	}
	defer sink.Abort()

	cast, err := tab.startScreencast(ctx, opts.Width, opts.Height)
	if err != nil {
		return err
	}
	defer cast.stop(tab)

	per := opts.FramesPerPage()
	total := per * len(urls)
	interval := time.Second / time.Duration(opts.FPS)
	n := 0
	for _, u := range urls {
		if _, err := tab.Navigate(ctx, u); err != nil {
			return err
		}
		if err := sleep(ctx, opts.Wait); err != nil {
			return err
		}
		// The screencast sends a frame only when the page paints; a
		// screenshot makes sure the first frame shows this page.
		first, err := tab.jpeg(ctx)
		if err != nil {
			return err
		}
		cast.set(first)
		start := time.Now()
		for i := range per {
			if err := sleep(ctx, time.Until(start.Add(time.Duration(i)*interval))); err != nil {
				return err
			}
			if opts.Scroll && per > 1 {
				if err := tab.scrollTo(ctx, float64(i)/float64(per-1)); err != nil {
					return err
				}
			}
			if err := sink.WriteFrame(ctx, cast.latest(), n); err != nil {
				return err
			}
			n++
			if progress != nil {
				progress(n, total)
			}
		}
	}
	cast.stop(tab)
	if err := sink.Close(ctx); err != nil {
		return err
	}
	if err := os.Chmod(tmpName, 0o644); err != nil { // CreateTemp made it private
		return fmt.Errorf("cannot write the video: %w", err)
	}
	if err := os.Rename(tmpName, out); err != nil {
		return fmt.Errorf("cannot write the video: %w", err)
	}
	done = true
	return nil
}

// jpeg captures the viewport as a JPEG, the screencast's format.
func (t *Tab) jpeg(ctx context.Context) ([]byte, error) {
	return run(t, ctx, t.m.ActionTimeout, "capture a frame", func(ctx context.Context, tg *chromedp.Target) ([]byte, error) {
		res, err := cdp.Call(ctx, tg, page.CaptureScreenshot, page.CaptureScreenshotParams{
			Format: page.CaptureScreenshotFormatJpeg, Quality: new(int64(80)), FromSurface: new(true),
		})
		return res.Data, err
	})
}

// scrollTo scrolls to a fraction of the page's height.
func (t *Tab) scrollTo(ctx context.Context, f float64) error {
	_, err := run(t, ctx, t.m.ActionTimeout, "scroll", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`window.scrollTo(0, %s * Math.max(0, document.documentElement.scrollHeight - window.innerHeight))`,
		strconv.FormatFloat(f, 'f', 4, 64))))
	return err
}

// screencast keeps the latest frame the page painted.
type screencast struct {
	mu     sync.Mutex
	frame  []byte
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func (t *Tab) startScreencast(ctx context.Context, width, height int) (*screencast, error) {
	sctx, cancel := context.WithCancel(t.ctx)
	frames := chromedp.Events(sctx, page.ScreencastFrame) // subscribed from here on
	sc := &screencast{cancel: cancel, done: make(chan struct{})}
	target := chromedp.FromContext(t.ctx).Target
	go func() {
		defer close(sc.done)
		for ev, err := range frames {
			if err != nil {
				return
			}
			sc.set(ev.Data)
			// Chrome sends the next frame only after this one is acknowledged.
			_, _ = cdp.Call(sctx, target, page.ScreencastFrameAck, page.ScreencastFrameAckParams{SessionID: ev.SessionID})
		}
	}()
	_, err := run(t, ctx, t.m.ActionTimeout, "start the screencast", func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, page.StartScreencast, page.StartScreencastParams{
			Format: page.StartScreencastFormatJpeg, Quality: new(int64(80)),
			MaxWidth: int64(width), MaxHeight: int64(height), EveryNthFrame: 1,
		})
		return chromedp.Void{}, err
	})
	if err != nil {
		cancel()
		<-sc.done
		return nil, err
	}
	return sc, nil
}

func (sc *screencast) set(frame []byte) {
	sc.mu.Lock()
	sc.frame = frame
	sc.mu.Unlock()
}

func (sc *screencast) latest() []byte {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.frame
}

func (sc *screencast) stop(t *Tab) {
	sc.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = run(t, ctx, 5*time.Second, "stop the screencast", func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := cdp.Call(ctx, tg, page.StopScreencast, cdp.Empty{})
			return chromedp.Void{}, err
		})
		sc.cancel()
		<-sc.done
	})
}

// frameSink encodes JPEG frames into the output file.
type frameSink interface {
	WriteFrame(ctx context.Context, jpeg []byte, index int) error
	Close(ctx context.Context) error // finishes the file
	Abort()                          // gives up, after Close a no-op
}

// ffmpegSink pipes the frames into ffmpeg, which makes an H.264 MP4.
type ffmpegSink struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *bytes.Buffer
	once   sync.Once
}

func startFFmpeg(ctx context.Context, ffmpeg, out string, o VideoOptions) (*ffmpegSink, error) {
	fps := strconv.Itoa(o.FPS)
	// H.264 in yuv420p needs even sides; the scale also evens out a frame
	// of another size.
	scale := fmt.Sprintf("scale=%d:%d,format=yuv420p", o.Width&^1, o.Height&^1)
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
		"-f", "image2pipe", "-framerate", fps, "-c:v", "mjpeg", "-i", "pipe:0",
		"-vf", scale, "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
		"-r", fps, "-movflags", "+faststart", "-f", "mp4", out)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("cannot start ffmpeg: %w", err)
	}
	s := &ffmpegSink{cmd: cmd, stdin: stdin, stderr: &bytes.Buffer{}}
	cmd.Stderr = &limitedWriter{w: s.stderr, n: 16 << 10}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start ffmpeg: %w", err)
	}
	return s, nil
}

func (s *ffmpegSink) WriteFrame(_ context.Context, jpeg []byte, _ int) error {
	if _, err := s.stdin.Write(jpeg); err != nil {
		return s.fail(err)
	}
	return nil
}

func (s *ffmpegSink) Close(context.Context) error {
	var err error
	s.once.Do(func() {
		s.stdin.Close()
		if werr := s.cmd.Wait(); werr != nil {
			err = s.failed(werr)
		}
	})
	return err
}

func (s *ffmpegSink) Abort() {
	s.once.Do(func() {
		s.stdin.Close()
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	})
}

// fail reports a write error with what ffmpeg said about it.
func (s *ffmpegSink) fail(err error) error {
	s.once.Do(func() {
		s.stdin.Close()
		_ = s.cmd.Wait()
	})
	return s.failed(err)
}

func (s *ffmpegSink) failed(err error) error {
	return fmt.Errorf("ffmpeg failed: %w: %s", err, strings.TrimSpace(s.stderr.String()))
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.n -= k
		_, _ = l.w.Write(p[:k])
	}
	return len(p), nil
}

// webmSink has Chromium encode the frames: a tab of its own runs a
// WebCodecs VP8 encoder with explicit timestamps (so the frame count and
// the duration do not depend on how fast it runs), and webmWriter puts the
// encoded frames into a WebM file.
type webmSink struct {
	tab  *Tab
	file *os.File
	wm   *webmWriter
	fps  int
	once sync.Once
}

// encoderOrigin serves the encoder page from an https origin that never
// reaches the network (the tab answers its requests itself): WebCodecs exists
// only in secure contexts, which about:blank and data: URLs are not.
const encoderOrigin = "https://video-encoder.moltgate.invalid"

// encodedChunk is a WebCodecs EncodedVideoChunk as the page hands it over.
type encodedChunk struct {
	Key  bool   `json:"key"`
	TS   int64  `json:"ts"` // microseconds
	Data string `json:"data"`
}

func startWebM(ctx context.Context, m *Manager, file *os.File, o VideoOptions) (*webmSink, error) {
	tab, err := m.OpenTab(ctx)
	if err != nil {
		return nil, err
	}
	s := &webmSink{tab: tab, file: file, fps: o.FPS}
	if err := tab.serveEncoderPage(ctx); err != nil {
		tab.Close()
		return nil, err
	}
	bitrate := max(500_000, o.Width*o.Height*o.FPS/5)
	if _, err := run(tab, ctx, m.ActionTimeout, "start the video encoder", chromedp.Evaluate[chromedp.Void](
		fmt.Sprintf(`moltgateEncoder.init(%d, %d, %d, %d)`, o.Width, o.Height, o.FPS, bitrate), chromedp.EvalAwaitPromise)); err != nil {
		tab.Close()
		return nil, moltgate.Errorf(moltgate.EUNAVAILABLE, "this browser cannot encode WebM (%v): write an .mp4 with ffmpeg instead", err)
	}
	if s.wm, err = newWebMWriter(file, o.Width, o.Height, o.FPS); err != nil {
		tab.Close()
		return nil, err
	}
	return s, nil
}

// serveEncoderPage loads the encoder page, answering the tab's requests for
// encoderOrigin from memory through the Fetch domain.
func (t *Tab) serveEncoderPage(ctx context.Context) error {
	_, err := run(t, ctx, t.m.ActionTimeout, "load the video encoder", func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		paused := cdp.Events(ctx, tg, fetch.RequestPaused)
		if _, err := cdp.Call(ctx, tg, fetch.Enable, fetch.EnableParams{
			Patterns: []*fetch.RequestPattern{{URLPattern: encoderOrigin + "/*"}},
		}); err != nil {
			return chromedp.Void{}, err
		}
		go func() {
			for ev, err := range paused {
				if err != nil {
					return
				}
				status, body := int64(404), []byte("not found")
				if ev.Request.URL == encoderOrigin+"/" {
					status, body = 200, []byte(encoderPage)
				}
				_, _ = cdp.Call(ctx, tg, fetch.FulfillRequest, fetch.FulfillRequestParams{
					RequestID: ev.RequestID, ResponseCode: status, Body: body,
					ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "text/html; charset=utf-8"}},
				})
			}
		}()
		if _, err := chromedp.Navigate(encoderOrigin+"/")(ctx, tg); err != nil {
			return chromedp.Void{}, err
		}
		_, err := cdp.Call(ctx, tg, fetch.Disable, cdp.Empty{})
		return chromedp.Void{}, err
	})
	return err
}

func (s *webmSink) WriteFrame(ctx context.Context, jpeg []byte, index int) error {
	key := index%(2*s.fps) == 0 // a keyframe every two seconds
	chunks, err := run(s.tab, ctx, s.tab.m.ActionTimeout, "encode a frame", chromedp.Evaluate[[]encodedChunk](
		fmt.Sprintf(`moltgateEncoder.frame(%q, %d, %t)`, base64.StdEncoding.EncodeToString(jpeg), index, key), chromedp.EvalAwaitPromise))
	if err != nil {
		return err
	}
	return s.write(chunks)
}

func (s *webmSink) write(chunks []encodedChunk) error {
	for _, c := range chunks {
		data, err := base64.StdEncoding.DecodeString(c.Data)
		if err != nil {
			return fmt.Errorf("cannot read an encoded frame: %w", err)
		}
		if err := s.wm.WriteFrame(data, c.TS, c.Key); err != nil {
			return err
		}
	}
	return nil
}

func (s *webmSink) Close(ctx context.Context) error {
	err := errors.New("the video was aborted")
	s.once.Do(func() {
		defer s.tab.Close()
		var chunks []encodedChunk
		if chunks, err = run(s.tab, ctx, s.tab.m.ActionTimeout, "finish the video", chromedp.Evaluate[[]encodedChunk](
			`moltgateEncoder.finish()`, chromedp.EvalAwaitPromise)); err != nil {
			return
		}
		if err = s.write(chunks); err != nil {
			return
		}
		if err = s.wm.Close(); err != nil {
			return
		}
		err = s.file.Close()
	})
	return err
}

func (s *webmSink) Abort() {
	s.once.Do(func() {
		s.tab.Close()
		s.file.Close()
	})
}

// encoderPage encodes JPEG frames to VP8 with WebCodecs. A frame's timestamp
// is its index over the frame rate, never the clock.
const encoderPage = `<!doctype html>
<meta charset="utf-8">
<title>moltgate video encoder</title>
<script>
"use strict";
const base64 = {
  decode(s) {
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(s);
    const bin = atob(s), a = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) a[i] = bin.charCodeAt(i);
    return a;
  },
  encode(a) {
    if (a.toBase64) return a.toBase64();
    let s = "";
    for (let i = 0; i < a.length; i += 0x8000) s += String.fromCharCode.apply(null, a.subarray(i, i + 0x8000));
    return btoa(s);
  },
};
window.moltgateEncoder = {
  async init(width, height, fps, bitrate) {
    const config = {codec: "vp8", width, height, bitrate, framerate: fps, latencyMode: "quality"};
    if (!(await VideoEncoder.isConfigSupported(config)).supported) throw new Error("VP8 encoding is not supported");
    Object.assign(this, {width, height, fps, chunks: [], error: null});
    this.canvas = new OffscreenCanvas(width, height);
    this.ctx = this.canvas.getContext("2d");
    this.encoder = new VideoEncoder({
      output: (chunk) => {
        const data = new Uint8Array(chunk.byteLength);
        chunk.copyTo(data);
        this.chunks.push({key: chunk.type === "key", ts: chunk.timestamp, data: base64.encode(data)});
      },
      error: (e) => { this.error = String(e); },
    });
    this.encoder.configure(config);
  },
  async frame(jpeg, index, keyFrame) {
    if (this.error) throw new Error(this.error);
    const bitmap = await createImageBitmap(new Blob([base64.decode(jpeg)], {type: "image/jpeg"}));
    this.ctx.drawImage(bitmap, 0, 0, this.width, this.height);
    bitmap.close();
    const frame = new VideoFrame(this.canvas, {timestamp: Math.round(index * 1e6 / this.fps), duration: Math.round(1e6 / this.fps)});
    this.encoder.encode(frame, {keyFrame});
    frame.close();
    while (this.encoder.encodeQueueSize > 2) await new Promise((r) => setTimeout(r, 5));
    return this.drain();
  },
  async finish() {
    await this.encoder.flush();
    this.encoder.close();
    if (this.error) throw new Error(this.error);
    return this.drain();
  },
  drain() {
    const out = this.chunks;
    this.chunks = [];
    return out;
  },
};
</script>`
