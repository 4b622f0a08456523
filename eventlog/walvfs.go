package eventlog

import (
	"sync"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// walVFSName is the SQLite VFS every connection of the log opens the file
// with (see DSN and openRawConn). It is SQLite's own unix VFS with one
// change: the frames a commit appends to the WAL are gathered in memory and
// reach the file just before the commit's fsync in as few writes as the
// unix VFS allows (124 KiB each), instead of two write calls a page.
//
// Nothing about durability changes: SQLite still calls xSync (an fsync, with
// synchronous=FULL) before a commit returns, and every byte written before
// it is in the file when the fsync starts. Syscalls are what a commit costs
// on this project's machines: measured on their disk, a commit of 40 pages
// took 640 µs as 80 writes + fsync and 280 µs as one write + fsync.
//
// It is correct only while every connection that writes through it keeps
// journal_mode=WAL and synchronous=FULL, as DSN ensures: the frames reach
// the file at the commit's xSync, and with synchronous=NORMAL a commit has
// none, so another connection would read frames that the WAL index lists
// and the file does not hold yet (a disk I/O error, SQLITE_IOERR_SHORT_READ).
const walVFSName = "moltgate-wal"

// walBufferMax bounds the bytes held back per WAL file; a transaction that
// writes more (a bulk copy) is written in pieces of this size.
const walBufferMax = 1 << 20

// registerWALVFS registers walVFSName, once, and returns SQLite's result.
// Where it fails (a platform without the unix VFS) every connection, the
// driver's (DSN) and the raw ones (openRawConn), opens the log with SQLite's
// default VFS instead: commits then write the WAL page by page.
var registerWALVFS = sync.OnceValue(func() int32 {
	tls := libc.NewTLS()
	defer tls.Close()
	// The unix VFS by name, not the default one, which may be anything
	// registered as default: the buffer's layout assumes unix's files.
	unix, err := libc.CString("unix")
	if err != nil {
		return sqlite3.SQLITE_NOMEM
	}
	defer libc.Xfree(tls, unix)
	base := sqlite3.Xsqlite3_vfs_find(tls, unix)
	if base == 0 {
		return sqlite3.SQLITE_ERROR
	}
	walVFS.base = base
	vfs := sqlite3.Xsqlite3_malloc64(tls, sqlite3.Tsqlite3_uint64(unsafe.Sizeof(sqlite3.Tsqlite3_vfs{})))
	name := sqlite3.Xsqlite3_malloc64(tls, sqlite3.Tsqlite3_uint64(len(walVFSName)+1))
	if vfs == 0 || name == 0 {
		return sqlite3.SQLITE_NOMEM
	}
	copy(unsafe.Slice((*byte)(cptr(name)), len(walVFSName)+1), walVFSName+"\x00")
	v := (*sqlite3.Tsqlite3_vfs)(cptr(vfs))
	*v = *(*sqlite3.Tsqlite3_vfs)(cptr(base))
	v.FpNext = 0
	v.FzName = name
	// The unix VFS's file struct is followed by the WAL buffer's state.
	v.FszOsFile += int32(unsafe.Sizeof(walState{}))
	v.FxOpen = cFunc(walOpen)
	return sqlite3.Xsqlite3_vfs_register(tls, vfs, 0)
})

// walVFS holds the wrapped VFS and, per io-methods table of the unix VFS
// (one per locking style), the table that intercepts WAL writes.
var walVFS struct {
	base uintptr

	mu      sync.Mutex
	methods map[uintptr]uintptr
}

// walState follows the unix VFS's own struct in every file opened through
// walVFSName, in SQLite's memory. Only WAL files use it.
type walState struct {
	methods uintptr // the unix VFS's io methods for this file
	buf     uintptr // pending bytes (sqlite3_malloc64)
	len     int64
	cap     int64
	off     int64 // file offset of the first pending byte
}

// cptr turns an address in SQLite's memory (never Go's heap) into a pointer.
func cptr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

// cFunc turns a Go function into a function pointer SQLite can call, the
// way modernc's transpiled code represents them.
func cFunc[T any](f T) uintptr { return *(*uintptr)(unsafe.Pointer(&struct{ f T }{f})) }

// goFunc is the inverse of cFunc.
func goFunc[T any](p uintptr) T { return *(*T)(unsafe.Pointer(&struct{ p uintptr }{p})) }

func stateOf(pFile uintptr) *walState {
	base := (*sqlite3.Tsqlite3_vfs)(cptr(walVFS.base))
	return (*walState)(cptr(pFile + uintptr(base.FszOsFile)))
}

func (s *walState) base() *sqlite3.Tsqlite3_io_methods {
	return (*sqlite3.Tsqlite3_io_methods)(cptr(s.methods))
}

type (
	openFunc     = func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32
	closeFunc    = func(*libc.TLS, uintptr) int32
	rwFunc       = func(*libc.TLS, uintptr, uintptr, int32, int64) int32
	truncateFunc = func(*libc.TLS, uintptr, int64) int32
	syncFunc     = func(*libc.TLS, uintptr, int32) int32
	sizeFunc     = func(*libc.TLS, uintptr, uintptr) int32
	controlFunc  = func(*libc.TLS, uintptr, int32, uintptr) int32
)

// walOpen opens a file with the unix VFS and, for a WAL file, swaps in the
// methods that gather writes.
func walOpen(tls *libc.TLS, pVfs, zName, pFile uintptr, flags int32, pOutFlags uintptr) int32 {
	base := (*sqlite3.Tsqlite3_vfs)(cptr(walVFS.base))
	rc := goFunc[openFunc](base.FxOpen)(tls, walVFS.base, zName, pFile, flags, pOutFlags)
	f := (*sqlite3.Tsqlite3_file)(cptr(pFile))
	if rc != sqlite3.SQLITE_OK || flags&sqlite3.SQLITE_OPEN_WAL == 0 || f.FpMethods == 0 {
		return rc
	}
	*stateOf(pFile) = walState{methods: f.FpMethods}
	f.FpMethods = wrappedMethods(f.FpMethods)
	return rc
}

// wrappedMethods returns the io-methods table that intercepts writes for
// files whose own table is orig, building it once.
func wrappedMethods(orig uintptr) uintptr {
	walVFS.mu.Lock()
	defer walVFS.mu.Unlock()
	if m, ok := walVFS.methods[orig]; ok {
		return m
	}
	tls := libc.NewTLS()
	defer tls.Close()
	p := sqlite3.Xsqlite3_malloc64(tls, sqlite3.Tsqlite3_uint64(unsafe.Sizeof(sqlite3.Tsqlite3_io_methods{})))
	if p == 0 {
		return orig // no memory: the file works unbuffered
	}
	m := (*sqlite3.Tsqlite3_io_methods)(cptr(p))
	*m = *(*sqlite3.Tsqlite3_io_methods)(cptr(orig))
	m.FxClose = cFunc(walClose)
	m.FxRead = cFunc(walRead)
	m.FxWrite = cFunc(walWrite)
	m.FxTruncate = cFunc(walTruncate)
	m.FxSync = cFunc(walSync)
	m.FxFileSize = cFunc(walFileSize)
	m.FxFileControl = cFunc(walFileControl)
	if walVFS.methods == nil {
		walVFS.methods = map[uintptr]uintptr{}
	}
	walVFS.methods[orig] = p
	return p
}

// maxWrite is the most the unix VFS writes in one call: it masks the
// length with 0x1ffff, so a larger write would be cut short.
const maxWrite = 31 * 4096

// flush writes the pending bytes, in as few calls as the unix VFS allows.
func (s *walState) flush(tls *libc.TLS, pFile uintptr) int32 {
	write := goFunc[rwFunc](s.base().FxWrite)
	for done := int64(0); done < s.len; {
		n := min(s.len-done, maxWrite)
		if rc := write(tls, pFile, s.buf+uintptr(done), int32(n), s.off+done); rc != sqlite3.SQLITE_OK {
			s.len = 0
			return rc
		}
		done += n
	}
	s.len = 0
	return sqlite3.SQLITE_OK
}

func walWrite(tls *libc.TLS, pFile, pBuf uintptr, amt int32, off int64) int32 {
	s := stateOf(pFile)
	n := int64(amt)
	if s.len > 0 && off >= s.off && off+n <= s.off+s.len {
		// A frame rewritten within the pending range (SQLite rewrites a
		// page written earlier in the same transaction).
		copy(unsafe.Slice((*byte)(cptr(s.buf+uintptr(off-s.off))), n), unsafe.Slice((*byte)(cptr(pBuf)), n))
		return sqlite3.SQLITE_OK
	}
	if s.len > 0 && (off != s.off+s.len || s.len+n > walBufferMax) {
		if rc := s.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
			return rc
		}
	}
	if n > maxWrite {
		return goFunc[rwFunc](s.base().FxWrite)(tls, pFile, pBuf, amt, off)
	}
	if s.len+n > s.cap {
		c := max(s.cap*2, 64<<10, s.len+n)
		c = min(c, walBufferMax)
		p := sqlite3.Xsqlite3_realloc64(tls, s.buf, sqlite3.Tsqlite3_uint64(c))
		if p == 0 {
			if rc := s.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
				return rc
			}
			return goFunc[rwFunc](s.base().FxWrite)(tls, pFile, pBuf, amt, off)
		}
		s.buf, s.cap = p, c
	}
	if s.len == 0 {
		s.off = off
	}
	copy(unsafe.Slice((*byte)(cptr(s.buf+uintptr(s.len))), n), unsafe.Slice((*byte)(cptr(pBuf)), n))
	s.len += n
	return sqlite3.SQLITE_OK
}

func walRead(tls *libc.TLS, pFile, pBuf uintptr, amt int32, off int64) int32 {
	s := stateOf(pFile)
	if rc := s.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return goFunc[rwFunc](s.base().FxRead)(tls, pFile, pBuf, amt, off)
}

func walSync(tls *libc.TLS, pFile uintptr, flags int32) int32 {
	s := stateOf(pFile)
	if rc := s.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return goFunc[syncFunc](s.base().FxSync)(tls, pFile, flags)
}

func walTruncate(tls *libc.TLS, pFile uintptr, size int64) int32 {
	s := stateOf(pFile)
	if rc := s.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return goFunc[truncateFunc](s.base().FxTruncate)(tls, pFile, size)
}

func walFileSize(tls *libc.TLS, pFile, pSize uintptr) int32 {
	s := stateOf(pFile)
	if rc := s.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return goFunc[sizeFunc](s.base().FxFileSize)(tls, pFile, pSize)
}

func walFileControl(tls *libc.TLS, pFile uintptr, op int32, pArg uintptr) int32 {
	s := stateOf(pFile)
	if rc := s.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return goFunc[controlFunc](s.base().FxFileControl)(tls, pFile, op, pArg)
}

func walClose(tls *libc.TLS, pFile uintptr) int32 {
	s := stateOf(pFile)
	rc := s.flush(tls, pFile)
	closeRC := goFunc[closeFunc](s.base().FxClose)(tls, pFile)
	if s.buf != 0 {
		sqlite3.Xsqlite3_free(tls, s.buf)
	}
	*s = walState{}
	if rc != sqlite3.SQLITE_OK {
		return rc
	}
	return closeRC
}
