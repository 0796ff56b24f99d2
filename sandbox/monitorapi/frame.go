package monitorapi

// The frames an attach connection carries after its answer (see Attach in
// the package documentation). Both the monitor and the client use this
// codec; it allocates only a reader's payload buffer.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FrameKind says what a frame carries.
type FrameKind byte

// Frame kinds. The client sends FrameStdin, FrameStdinClosed and
// FrameResize; the monitor FrameStdout and FrameStderr.
const (
	FrameStdin       FrameKind = 0
	FrameStdout      FrameKind = 1
	FrameStderr      FrameKind = 2
	FrameStdinClosed FrameKind = 3
	// FrameResize's payload is the terminal's width and height, each a
	// big-endian uint16.
	FrameResize FrameKind = 4
)

const (
	// FrameHeaderSize is a frame's kind byte and 4-byte length.
	FrameHeaderSize = 5
	// MaxFramePayload bounds a frame's payload; a longer length is a
	// protocol error.
	MaxFramePayload = 32 << 10
	// MaxAttachBacklog is how much output (framed) the monitor queues for
	// one attacher before it drops it.
	MaxAttachBacklog = 1 << 20
)

// ErrFrameTooLarge is a frame length above MaxFramePayload.
var ErrFrameTooLarge = errors.New("attach frame longer than the protocol allows")

// AppendFrames appends p to dst as frames of kind, cut into pieces of at
// most MaxFramePayload bytes; an empty p is one empty frame.
func AppendFrames(dst []byte, kind FrameKind, p []byte) []byte {
	for {
		n := min(len(p), MaxFramePayload)
		dst = append(dst, byte(kind))
		dst = binary.BigEndian.AppendUint32(dst, uint32(n))
		dst = append(dst, p[:n]...)
		p = p[n:]
		if len(p) == 0 {
			return dst
		}
	}
}

// FramedSize is how many bytes AppendFrames adds for n payload bytes.
func FramedSize(n int) int {
	frames := max(1, (n+MaxFramePayload-1)/MaxFramePayload)
	return n + frames*FrameHeaderSize
}

// ResizePayload is a FrameResize payload.
func ResizePayload(width, height uint16) [4]byte {
	var p [4]byte
	binary.BigEndian.PutUint16(p[:2], width)
	binary.BigEndian.PutUint16(p[2:], height)
	return p
}

// ParseResize reads a FrameResize payload.
func ParseResize(p []byte) (width, height uint16, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("resize frame of %d bytes, want 4", len(p))
	}
	return binary.BigEndian.Uint16(p[:2]), binary.BigEndian.Uint16(p[2:]), nil
}

// FrameReader reads frames from a stream.
type FrameReader struct {
	r   io.Reader
	hdr [FrameHeaderSize]byte
	buf []byte // grows to the longest payload seen
}

// NewFrameReader reads frames from r.
func NewFrameReader(r io.Reader) *FrameReader { return &FrameReader{r: r} }

// Next reads one frame. Its payload is valid until the next call. At the
// end of the stream between two frames it returns io.EOF; a frame cut
// short is io.ErrUnexpectedEOF, a length above MaxFramePayload
// ErrFrameTooLarge.
func (fr *FrameReader) Next() (FrameKind, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[1:])
	if n > MaxFramePayload {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	if int(n) > cap(fr.buf) {
		// Doubling from a small start: stdin and resize frames are short,
		// so most readers never hold a full-size buffer.
		size := max(512, 2*cap(fr.buf))
		for size < int(n) {
			size *= 2
		}
		fr.buf = make([]byte, min(size, MaxFramePayload))
	}
	p := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return FrameKind(fr.hdr[0]), p, nil
}
