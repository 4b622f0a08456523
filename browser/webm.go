package browser

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// webmWriter writes VP8 frames into a WebM file (the Matroska subset that
// browsers play): an EBML header, one Segment with Info and one video
// track, and a Cluster per keyframe. No Go WebM library is allowed here
// (the package imports only the standard library besides chromedp and
// coder/websocket), and the subset is small. The Segment's size and the
// Duration are patched in when the writer closes.
type webmWriter struct {
	w              io.WriteSeeker
	segmentData    int64 // file offset where the Segment's data starts
	segmentSizeAt  int64 // file offset of the Segment's 8-byte size
	durationAt     int64 // file offset of the Duration's float64
	cluster        bytes.Buffer
	clusterStartMs int64
	open           bool // a cluster is being built
	lastMs         int64
	frameMs        float64
}

// EBML element ids.
const (
	idEBML               = 0x1A45DFA3
	idEBMLVersion        = 0x4286
	idEBMLReadVersion    = 0x42F7
	idEBMLMaxIDLength    = 0x42F2
	idEBMLMaxSizeLength  = 0x42F3
	idDocType            = 0x4282
	idDocTypeVersion     = 0x4287
	idDocTypeReadVersion = 0x4285
	idSegment            = 0x18538067
	idInfo               = 0x1549A966
	idTimecodeScale      = 0x2AD7B1
	idDuration           = 0x4489
	idMuxingApp          = 0x4D80
	idWritingApp         = 0x5741
	idTracks             = 0x1654AE6B
	idTrackEntry         = 0xAE
	idTrackNumber        = 0xD7
	idTrackUID           = 0x73C5
	idTrackType          = 0x83
	idFlagLacing         = 0x9C
	idCodecID            = 0x86
	idDefaultDuration    = 0x23E383
	idVideo              = 0xE0
	idPixelWidth         = 0xB0
	idPixelHeight        = 0xBA
	idCluster            = 0x1F43B675
	idTimecode           = 0xE7
	idSimpleBlock        = 0xA3
)

// newWebMWriter writes the header of a VP8 video of width×height at fps.
func newWebMWriter(w io.WriteSeeker, width, height, fps int) (*webmWriter, error) {
	wm := &webmWriter{w: w, frameMs: 1000 / float64(fps)}
	var head bytes.Buffer
	writeElement(&head, idEBML, concat(
		uintElement(idEBMLVersion, 1),
		uintElement(idEBMLReadVersion, 1),
		uintElement(idEBMLMaxIDLength, 4),
		uintElement(idEBMLMaxSizeLength, 8),
		stringElement(idDocType, "webm"),
		uintElement(idDocTypeVersion, 2), // SimpleBlock needs version 2
		uintElement(idDocTypeReadVersion, 2),
	))
	writeID(&head, idSegment)
	wm.segmentSizeAt = int64(head.Len())
	head.Write([]byte{0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}) // unknown size until Close
	wm.segmentData = int64(head.Len())

	var info bytes.Buffer
	info.Write(uintElement(idTimecodeScale, 1_000_000)) // timecodes in milliseconds
	writeID(&info, idDuration)
	info.WriteByte(0x88) // size 8
	durationInInfo := info.Len()
	info.Write(make([]byte, 8))
	info.Write(stringElement(idMuxingApp, "moltgate"))
	info.Write(stringElement(idWritingApp, "moltgate"))
	writeID(&head, idInfo)
	writeSize(&head, uint64(info.Len()))
	wm.durationAt = int64(head.Len() + durationInInfo)
	head.Write(info.Bytes())

	writeElement(&head, idTracks, elementBytes(idTrackEntry, concat(
		uintElement(idTrackNumber, 1),
		uintElement(idTrackUID, 1),
		uintElement(idTrackType, 1), // video
		uintElement(idFlagLacing, 0),
		stringElement(idCodecID, "V_VP8"),
		uintElement(idDefaultDuration, uint64(math.Round(1e9/float64(fps)))),
		elementBytes(idVideo, concat(
			uintElement(idPixelWidth, uint64(width)),
			uintElement(idPixelHeight, uint64(height)),
		)),
	)))
	if _, err := w.Write(head.Bytes()); err != nil {
		return nil, fmt.Errorf("cannot write the video: %w", err)
	}
	return wm, nil
}

// WriteFrame adds one encoded frame at its timestamp in microseconds. A
// keyframe starts a new cluster, so every cluster can be decoded alone.
func (wm *webmWriter) WriteFrame(data []byte, tsMicros int64, key bool) error {
	ms := tsMicros / 1000
	if key || !wm.open || ms-wm.clusterStartMs > math.MaxInt16 {
		if err := wm.flushCluster(); err != nil {
			return err
		}
		wm.open = true
		wm.clusterStartMs = ms
		wm.cluster.Write(uintElement(idTimecode, uint64(ms)))
	}
	var block bytes.Buffer
	block.WriteByte(0x81) // track 1
	_ = binary.Write(&block, binary.BigEndian, int16(ms-wm.clusterStartMs))
	flags := byte(0)
	if key {
		flags = 0x80
	}
	block.WriteByte(flags)
	block.Write(data)
	writeElement(&wm.cluster, idSimpleBlock, block.Bytes())
	wm.lastMs = ms
	return nil
}

func (wm *webmWriter) flushCluster() error {
	if !wm.open {
		return nil
	}
	var b bytes.Buffer
	writeElement(&b, idCluster, wm.cluster.Bytes())
	wm.cluster.Reset()
	wm.open = false
	if _, err := wm.w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("cannot write the video: %w", err)
	}
	return nil
}

// Close writes the last cluster and patches the Segment's size and the
// Duration.
func (wm *webmWriter) Close() error {
	if err := wm.flushCluster(); err != nil {
		return err
	}
	end, err := wm.w.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("cannot finish the video: %w", err)
	}
	var size [8]byte
	binary.BigEndian.PutUint64(size[:], uint64(end-wm.segmentData)|0x01<<56)
	var dur [8]byte
	binary.BigEndian.PutUint64(dur[:], math.Float64bits(float64(wm.lastMs)+wm.frameMs))
	for _, p := range []struct {
		at int64
		b  []byte
	}{{wm.segmentSizeAt, size[:]}, {wm.durationAt, dur[:]}} {
		if _, err := wm.w.Seek(p.at, io.SeekStart); err != nil {
			return fmt.Errorf("cannot finish the video: %w", err)
		}
		if _, err := wm.w.Write(p.b); err != nil {
			return fmt.Errorf("cannot finish the video: %w", err)
		}
	}
	_, err = wm.w.Seek(end, io.SeekStart)
	return err
}

// writeID writes an element id: its bytes as they are, the length marker
// included.
func writeID(b *bytes.Buffer, id uint32) {
	switch {
	case id >= 1<<24:
		b.Write([]byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)})
	case id >= 1<<16:
		b.Write([]byte{byte(id >> 16), byte(id >> 8), byte(id)})
	case id >= 1<<8:
		b.Write([]byte{byte(id >> 8), byte(id)})
	default:
		b.WriteByte(byte(id))
	}
}

// writeSize writes an EBML variable-length size in the fewest bytes.
func writeSize(b *bytes.Buffer, n uint64) {
	length := 1
	for length < 8 && n >= (1<<(7*length))-1 { // all ones is reserved for "unknown"
		length++
	}
	v := n | 1<<(7*length)
	for i := length - 1; i >= 0; i-- {
		b.WriteByte(byte(v >> (8 * i)))
	}
}

func writeElement(b *bytes.Buffer, id uint32, data []byte) {
	writeID(b, id)
	writeSize(b, uint64(len(data)))
	b.Write(data)
}

func elementBytes(id uint32, data []byte) []byte {
	var b bytes.Buffer
	writeElement(&b, id, data)
	return b.Bytes()
}

func uintElement(id uint32, v uint64) []byte {
	n := 1
	for n < 8 && v >= 1<<(8*n) {
		n++
	}
	data := make([]byte, n)
	for i := range n {
		data[n-1-i] = byte(v >> (8 * i))
	}
	return elementBytes(id, data)
}

func stringElement(id uint32, s string) []byte { return elementBytes(id, []byte(s)) }

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
