package agent

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"math"

	moltgate "github.com/moltgate/moltgate"
)

// Screenshot limits. Recorded images live in the event log and its
// replica, so they stay small; a long edge of 1568 pixels is what
// Anthropic's models read without rescaling.
const (
	MaxImageBytes  = 300 << 10
	MaxImageEdge   = 1568
	maxImagePixels = 16 << 20 // refuse to decode anything larger (64 MiB as RGBA)
)

// compactScreenshot turns a PNG screenshot into an image fit to record
// and to show a model: the PNG itself when it is small enough, else a
// JPEG, scaled down and compressed until it is under maxBytes
// (MaxImageBytes, but for tests).
func compactScreenshot(pngData []byte, maxBytes int) (*moltgate.Media, error) {
	cfg, err := png.DecodeConfig(bytes.NewReader(pngData))
	if err != nil {
		return nil, fmt.Errorf("the screenshot is not a PNG: %w", err)
	}
	if cfg.Width*cfg.Height > maxImagePixels {
		return nil, fmt.Errorf("the screenshot is too large (%d×%d)", cfg.Width, cfg.Height)
	}
	if len(pngData) <= maxBytes && max(cfg.Width, cfg.Height) <= MaxImageEdge {
		return &moltgate.Media{MimeType: "image/png", Data: pngData, Width: cfg.Width, Height: cfg.Height}, nil
	}
	img, err := png.Decode(bytes.NewReader(pngData))
	if err != nil {
		return nil, fmt.Errorf("cannot decode the screenshot: %w", err)
	}
	edge := min(max(cfg.Width, cfg.Height), MaxImageEdge)
	for attempt := 0; attempt < 8 && edge >= 64; attempt++ {
		scaled := scaleDown(img, edge)
		size := 0
		for _, q := range []int{80, 60} {
			var buf bytes.Buffer
			if err := jpeg.Encode(&buf, scaled, &jpeg.Options{Quality: q}); err != nil {
				return nil, fmt.Errorf("cannot encode the screenshot: %w", err)
			}
			if buf.Len() <= maxBytes {
				b := scaled.Bounds()
				return &moltgate.Media{MimeType: "image/jpeg", Data: buf.Bytes(), Width: b.Dx(), Height: b.Dy()}, nil
			}
			size = buf.Len()
		}
		// The size follows the area: shrink the edge by the square root
		// of the excess, with a margin.
		edge = int(float64(edge) * min(0.75, 0.9*math.Sqrt(float64(maxBytes)/float64(size))))
	}
	return nil, errors.New("cannot compress the screenshot enough")
}

// scaleDown shrinks img so that its long edge is at most edge pixels,
// averaging the source pixels each target pixel covers (a box filter:
// text stays legible, unlike nearest-neighbour sampling).
func scaleDown(img image.Image, edge int) *image.RGBA {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if max(w, h) <= edge {
		out := image.NewRGBA(image.Rect(0, 0, w, h))
		draw.Draw(out, out.Bounds(), img, b.Min, draw.Src)
		return out
	}
	nw, nh := w*edge/max(w, h), h*edge/max(w, h)
	nw, nh = max(nw, 1), max(nh, 1)
	src, ok := img.(*image.RGBA)
	if !ok || b.Min != (image.Point{}) {
		src = image.NewRGBA(image.Rect(0, 0, w, h))
		draw.Draw(src, src.Bounds(), img, b.Min, draw.Src)
	}
	out := image.NewRGBA(image.Rect(0, 0, nw, nh))
	for y := 0; y < nh; y++ {
		y0, y1 := y*h/nh, max((y+1)*h/nh, y*h/nh+1)
		for x := 0; x < nw; x++ {
			x0, x1 := x*w/nw, max((x+1)*w/nw, x*w/nw+1)
			var r, g, bl, a, n uint32
			for sy := y0; sy < y1; sy++ {
				row := src.Pix[sy*src.Stride:]
				for sx := x0; sx < x1; sx++ {
					p := row[sx*4 : sx*4+4]
					r, g, bl, a = r+uint32(p[0]), g+uint32(p[1]), bl+uint32(p[2]), a+uint32(p[3])
					n++
				}
			}
			o := out.Pix[y*out.Stride+x*4:]
			o[0], o[1], o[2], o[3] = uint8(r/n), uint8(g/n), uint8(bl/n), uint8(a/n)
		}
	}
	return out
}
