package monitor

// The container log in kubelet's CRI format, as containerd writes it
// (internal/cri/io/logger.go): one line per output line,
//
//	<RFC3339Nano time> <stdout|stderr> <F|P> <content>\n
//
// A line longer than maxLineLen is cut into maxLineLen chunks tagged P with
// the rest tagged F; output that ends without a newline is written tagged P
// (kubelet then shows it without a newline, as it was produced). A "\r\n"
// line end counts as "\n", as in containerd.

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"golang.org/x/sys/unix"
)

const (
	// maxLineLen is containerd's default max_container_log_line_size.
	maxLineLen = 16 * 1024
	// hdrRoom is reserved in front of a line's content for its header
	// ("2006-01-02T15:04:05.999999999-07:00 stderr P " is 46 bytes), so the
	// header and the content go out in one write without copying the content.
	hdrRoom = 48
	// initialContent is the content buffer a stream starts with; it grows
	// (once, and stays) only for a stream that writes long lines.
	initialContent = 4096
	// maxContent holds a full chunk plus the two bytes needed to tell a
	// chunk that is exactly maxLineLen long ("...\r\n" or "...\n" follows)
	// from one that must be split.
	maxContent = maxLineLen + 2
)

// criLog is one container's log file. Its stdout and stderr copiers share
// it: each line goes out in a single write under mu, and reopen swaps the
// file under the same lock, so a line lands whole in exactly one file and
// the streams never interleave within a line.
type criLog struct {
	mu   sync.Mutex
	path string
	f    *os.File // nil once closed or when the output is discarded
	// failed is set after a write error was logged, so a full disk does
	// not flood the monitor's own log; a successful write clears it.
	failed bool
}

// openLogFile opens path the way every log file of a container is opened.
func openLogFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_CLOEXEC, 0o640)
}

// newCRILog opens the log at path; an empty path discards the output.
func newCRILog(path string) (*criLog, error) {
	l := &criLog{path: path}
	if path == "" {
		return l, nil
	}
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	l.f = f
	return l, nil
}

// writeLine writes one complete, formatted line.
func (l *criLog) writeLine(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	// Keep going on error: the streams must be drained or the container
	// blocks on a full pipe. containerd does the same.
	if _, err := l.f.Write(b); err != nil {
		if !l.failed {
			slog.Error("cannot write the container log; its output is lost until this recovers", "path", l.path, "error", err)
			l.failed = true
		}
		return
	}
	l.failed = false
}

// reopen continues the log in a new file at its path (after kubelet renamed
// the old one away). On failure the old file stays in use.
func (l *criLog) reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := openLogFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	if old == nil { // closed meanwhile: the container is gone
		l.mu.Unlock()
		_ = f.Close()
		return errors.New("the container's log is closed")
	}
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

// close ends the log; later writes are dropped.
func (l *criLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// lineWriter formats one stream's output into CRI log lines. Its buffers
// are reused for every line: formatting a line allocates nothing.
type lineWriter struct {
	log    *criLog
	stream string // "stdout" or "stderr"
	// buf is hdrRoom bytes for the header, then up to maxContent bytes of
	// content, then one spare byte where a line's "\n" goes.
	buf []byte
	n   int // content bytes held in buf[hdrRoom:hdrRoom+n], none a '\n'
	hdr [hdrRoom]byte
	// tap, if set, gets every read as output of kind for its attachers.
	tap  *containerIO
	kind monitorapi.FrameKind
}

func newLineWriter(log *criLog, stream string) *lineWriter {
	return &lineWriter{log: log, stream: stream}
}

// copyFrom formats everything read from r until EOF or a read error (a
// pty master reports EIO once the terminal's last holder closed it), then
// writes what is left of an unterminated line tagged P. A read deadline
// (os.ErrDeadlineExceeded: the monitor pauses its copiers to renew itself)
// returns at once and keeps the unterminated line: copyFrom continues it.
func (w *lineWriter) copyFrom(r io.Reader) error {
	if w.buf == nil {
		if f, ok := r.(*os.File); ok {
			// A stream that never writes (most do not) holds no buffer.
			if err := awaitReadable(f); errors.Is(err, os.ErrDeadlineExceeded) {
				return err
			}
		}
		w.buf = make([]byte, hdrRoom+initialContent+1)
	}
	for {
		if hdrRoom+w.n == len(w.buf)-1 {
			w.grow()
		}
		k, err := r.Read(w.buf[hdrRoom+w.n : len(w.buf)-1])
		if k > 0 {
			if w.tap != nil {
				w.tap.tapOutput(w.kind, w.buf[hdrRoom+w.n:hdrRoom+w.n+k])
			}
			w.consume(k)
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return err
			}
			if w.n > 0 {
				w.emitSplit(hdrRoom, hdrRoom+w.n, 'P')
				w.n = 0
			}
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.EIO) || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return err
		}
	}
}

// pending is the unterminated line the writer holds.
func (w *lineWriter) pending() []byte {
	if w.buf == nil {
		return nil
	}
	return w.buf[hdrRoom : hdrRoom+w.n]
}

// preload makes the writer hold p (at most maxContent bytes) as the start
// of its next line.
func (w *lineWriter) preload(p []byte) {
	if len(p) == 0 {
		return
	}
	p = p[:min(len(p), maxContent)]
	size := initialContent
	for size < len(p)+1 {
		size *= 2
	}
	w.buf = make([]byte, hdrRoom+min(size, maxContent)+1)
	w.n = copy(w.buf[hdrRoom:], p)
}

// awaitReadable returns once f has something to read (or hung up, or
// failed), waiting in the runtime's poller; or with the error of a read
// deadline.
func awaitReadable(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(func(fd uintptr) bool {
		pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd[:], 0)
		return err != nil || n > 0
	})
}

// grow doubles the content buffer, up to maxContent.
func (w *lineWriter) grow() {
	size := min(2*(len(w.buf)-1-hdrRoom), maxContent)
	nb := make([]byte, hdrRoom+size+1)
	copy(nb[hdrRoom:], w.buf[hdrRoom:hdrRoom+w.n])
	w.buf = nb
}

// consume handles k new bytes read after the w.n held ones: it writes every
// completed line, keeps the unterminated rest, and splits it while it is
// longer than maxLineLen.
func (w *lineWriter) consume(k int) {
	content := w.buf[hdrRoom : hdrRoom+w.n+k]
	start, scan := 0, w.n // only the new bytes can hold a '\n'
	for {
		i := bytes.IndexByte(content[scan:], '\n')
		if i < 0 {
			break
		}
		nl := scan + i
		end := nl
		if end > start && content[end-1] == '\r' {
			end--
		}
		w.emitSplit(hdrRoom+start, hdrRoom+end, 'F')
		start, scan = nl+1, nl+1
	}
	w.n = copy(w.buf[hdrRoom:], content[start:])
	// At most maxContent bytes are held. maxLineLen+1 bytes ending in '\r'
	// may still be a maxLineLen line ending in "\r\n": wait for one more.
	for w.n > maxLineLen && !(w.n == maxLineLen+1 && w.buf[hdrRoom+maxLineLen] == '\r') {
		var rest [maxContent - maxLineLen]byte
		r := copy(rest[:], w.buf[hdrRoom+maxLineLen:hdrRoom+w.n])
		w.emit(hdrRoom, hdrRoom+maxLineLen, 'P')
		w.n = copy(w.buf[hdrRoom:], rest[:r])
	}
}

// emitSplit writes the content buf[start:end] as lines of at most
// maxLineLen: P for all but the last, which gets tag.
func (w *lineWriter) emitSplit(start, end int, tag byte) {
	for end-start > maxLineLen {
		cut := start + maxLineLen
		b := w.buf[cut] // emit puts the newline there
		w.emit(start, cut, 'P')
		w.buf[cut] = b
		start = cut
	}
	w.emit(start, end, tag)
}

// emit writes the content buf[start:end] as one line with the given tag.
// It writes the header into the bytes just before start (the reserved room,
// or the tail of a line already written) and the newline at buf[end].
func (w *lineWriter) emit(start, end int, tag byte) {
	h := time.Now().AppendFormat(w.hdr[:0], time.RFC3339Nano)
	h = append(h, ' ')
	h = append(h, w.stream...)
	h = append(h, ' ', tag, ' ')
	copy(w.buf[start-len(h):start], h)
	w.buf[end] = '\n'
	w.log.writeLine(w.buf[start-len(h) : end+1])
}
