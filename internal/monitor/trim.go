package monitor

// The executable's mapped pages: shared with every other monitor, but each
// monitor maps (and is charged its share of) whatever the kernel faulted
// in around the code it ever ran, which at start is most of the binary.

import (
	"bytes"
	"syscall"

	"golang.org/x/sys/unix"
)

// exeRange is a read-only mapping of the monitor's executable.
type exeRange struct{ start, end uintptr }

// maxExeRanges bounds the mappings kept (a static Go binary has two).
const maxExeRanges = 8

// exeRanges finds the read-only mappings of the executable (text,
// read-only data) none of whose pages were ever written: a RELRO segment,
// written by the dynamic loader and then made read-only, would lose its
// relocations to MADV_DONTNEED. It reads /proc/self/smaps through a fixed
// buffer: it runs at every (re)start of the monitor, and the garbage of a
// line-by-line parse would cost more than the trim saves.
func exeRanges() []exeRange {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		return nil
	}
	fd, err := syscall.Open("/proc/self/smaps", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer syscall.Close(fd)
	var found [maxExeRanges]exeRange
	n := 0
	cur := false // the mapping being read is one of found
	var buf [8192]byte
	held := 0
	for {
		k, err := syscall.Read(fd, buf[held:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil
		}
		if k == 0 {
			break
		}
		data := buf[:held+k]
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			line := data[:i]
			data = data[i+1:]
			if m, ok := parseMapping(line); ok {
				cur = false
				if m.dev == st.Dev && m.ino == st.Ino && !m.writable && n < maxExeRanges {
					found[n] = exeRange{m.start, m.end}
					n++
					cur = true
				}
				continue
			}
			if cur && bytes.HasPrefix(line, []byte("Anonymous:")) && !bytes.Equal(bytes.TrimSpace(line[len("Anonymous:"):]), []byte("0 kB")) {
				n-- // written pages: leave it alone
				cur = false
			}
		}
		held = copy(buf[:], data)
		if held == len(buf) {
			held = 0 // a line longer than the buffer: not a mapping of ours
		}
	}
	return append([]exeRange(nil), found[:n]...)
}

// mapping is a /proc/self/smaps mapping line:
// start-end perms offset major:minor inode [path].
type mapping struct {
	start, end uintptr
	writable   bool
	dev, ino   uint64
}

func parseMapping(line []byte) (mapping, bool) {
	var m mapping
	var f [6][]byte
	nf := 0
	for rest := line; nf < len(f); nf++ {
		rest = bytes.TrimLeft(rest, " ")
		if len(rest) == 0 {
			break
		}
		i := bytes.IndexByte(rest, ' ')
		if i < 0 {
			i = len(rest)
		}
		f[nf], rest = rest[:i], rest[i:]
	}
	if nf < 5 {
		return m, false
	}
	se, perms, dev, ino := f[0], f[1], f[3], f[4]
	i := bytes.IndexByte(se, '-')
	j := bytes.IndexByte(dev, ':')
	if i < 0 || j < 0 || len(perms) != 4 {
		return m, false
	}
	var ok [5]bool
	var start, end, major, minor uint64
	start, ok[0] = parseUint(se[:i], 16)
	end, ok[1] = parseUint(se[i+1:], 16)
	major, ok[2] = parseUint(dev[:j], 16)
	minor, ok[3] = parseUint(dev[j+1:], 16)
	m.ino, ok[4] = parseUint(ino, 10)
	for _, o := range ok {
		if !o {
			return m, false
		}
	}
	m.start, m.end = uintptr(start), uintptr(end)
	m.writable = perms[1] == 'w'
	m.dev = unix.Mkdev(uint32(major), uint32(minor))
	return m, true
}

// parseUint parses digits of the base (10 or 16) without allocating.
func parseUint(b []byte, base uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			return 0, false
		}
		v = v*base + d
	}
	return v, true
}

// trimExe drops the monitor's page table entries for its executable's
// read-only pages (text and read-only data, never written, so nothing is
// lost: they stay in the page cache and fault back in when run): an idle
// monitor then maps about the code it keeps running.
func trimExe(rs []exeRange) {
	for _, r := range rs {
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_DONTNEED)
	}
}
