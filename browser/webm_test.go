package browser

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteSize(t *testing.T) {
	for _, c := range []struct {
		n    uint64
		want []byte
	}{
		{0, []byte{0x80}},
		{126, []byte{0xFE}},
		{127, []byte{0x40, 0x7F}}, // 0xFF would mean "unknown size"
		{300, []byte{0x41, 0x2C}},
		{16382, []byte{0x7F, 0xFE}},
		{16383, []byte{0x20, 0x3F, 0xFF}},
	} {
		var b bytes.Buffer
		writeSize(&b, c.n)
		if !bytes.Equal(b.Bytes(), c.want) {
			t.Errorf("writeSize(%d) = % x, want % x", c.n, b.Bytes(), c.want)
		}
	}
}

// ebml is a minimal reader for the test: one element at a time.
type ebml struct{ b []byte }

func (e *ebml) vint(keepMarker bool) (uint64, int) {
	first := e.b[0]
	n := 1
	for first&(0x80>>(n-1)) == 0 {
		n++
	}
	v := uint64(first)
	if !keepMarker {
		v &= uint64(0xFF >> n)
	}
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(e.b[i])
	}
	e.b = e.b[n:]
	return v, n
}

func (e *ebml) next() (id uint64, data []byte) {
	id, _ = e.vint(true)
	size, n := e.vint(false)
	if size == (1<<(7*n))-1 {
		size = uint64(len(e.b)) // unknown: to the end
	}
	data, e.b = e.b[:size], e.b[size:]
	return id, data
}

func TestWebMWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.webm")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	wm, err := newWebMWriter(f, 320, 240, 10)
	if err != nil {
		t.Fatal(err)
	}
	// 45 frames, a keyframe every 20: three clusters.
	for i := range 45 {
		frame := bytes.Repeat([]byte{byte(i)}, 100+i)
		if err := wm.WriteFrame(frame, int64(i)*100_000, i%20 == 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := wm.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	data, _ := os.ReadFile(path)

	r := &ebml{b: data}
	if id, head := r.next(); id != idEBML || !bytes.Contains(head, []byte("webm")) {
		t.Fatalf("first element %x", id)
	}
	id, segment := r.next()
	if id != idSegment || len(r.b) != 0 {
		t.Fatalf("segment %x, %d bytes after it: its size is wrong", id, len(r.b))
	}
	seg := &ebml{b: segment}
	var clusters, blocks, keys int
	var duration float64
	var lastTime int64
	for len(seg.b) > 0 {
		id, body := seg.next()
		switch id {
		case idInfo:
			in := &ebml{b: body}
			for len(in.b) > 0 {
				if id, v := in.next(); id == idDuration {
					duration = math.Float64frombits(binary.BigEndian.Uint64(v))
				}
			}
		case idCluster:
			clusters++
			c := &ebml{b: body}
			var base int64
			for len(c.b) > 0 {
				id, v := c.next()
				switch id {
				case idTimecode:
					base = 0
					for _, b := range v {
						base = base<<8 | int64(b)
					}
				case idSimpleBlock:
					at := base + int64(int16(binary.BigEndian.Uint16(v[1:3])))
					if v[0] != 0x81 || at != int64(blocks)*100 || len(v)-4 != 100+blocks || v[4] != byte(blocks) {
						t.Errorf("block %d: track %x at %d ms, %d bytes", blocks, v[0], at, len(v)-4)
					}
					if v[3]&0x80 != 0 {
						keys++
						if blocks%20 != 0 {
							t.Errorf("block %d is marked a keyframe", blocks)
						}
					}
					lastTime = at
					blocks++
				}
			}
		}
	}
	if clusters != 3 || blocks != 45 || keys != 3 || lastTime != 4400 || duration != 4500 {
		t.Errorf("%d clusters, %d blocks, %d keys, last at %d ms, duration %v ms", clusters, blocks, keys, lastTime, duration)
	}
}
