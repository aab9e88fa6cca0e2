package fetch

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// archive returns a small tar.gz in the layout of cifar-10-binary.tar.gz.
func archive(t testing.TB) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for i, name := range []string{"cifar-10-batches-bin/data_batch_1.bin", "cifar-10-batches-bin/test_batch.bin"} {
		rec := make([]byte, 3*3073)
		rng := rand.New(rand.NewSource(int64(i))) // incompressible
		rng.Read(rec)
		for r := 0; r < 3; r++ {
			rec[r*3073] = byte(r)
		}
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(rec)), Typeflag: tar.TypeReg})
		tw.Write(rec)
	}
	tw.Close()
	zw.Close()
	return b.Bytes()
}

// server serves payload with range support. cutAfter > 0 makes the next
// `cuts` responses break the connection after that many body bytes.
type server struct {
	etag     string
	payload  []byte
	cutAfter int
	cuts     int32
	noRanges bool
	mu       sync.Mutex
	ranges   []string
	requests int32
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/data.tgz" {
		http.NotFound(w, r)
		return
	}
	atomic.AddInt32(&s.requests, 1)
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	s.mu.Unlock()
	if s.noRanges {
		r.Header.Del("Range")
	}
	if s.etag != "" {
		w.Header().Set("ETag", s.etag)
	}
	if s.cutAfter > 0 && atomic.AddInt32(&s.cuts, -1) >= 0 {
		w = &cutWriter{ResponseWriter: w, left: s.cutAfter}
	}
	http.ServeContent(w, r, "data.tgz", time.Time{}, bytes.NewReader(s.payload))
}

type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) > c.left {
		c.ResponseWriter.Write(p[:c.left])
		c.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	c.left -= len(p)
	return c.ResponseWriter.Write(p)
}

type recorder struct {
	mu    sync.Mutex
	last  int
	calls int
}

func (r *recorder) Report(stage string, done, total int, msg string) {
	r.mu.Lock()
	r.last, r.calls = done, r.calls+1
	r.mu.Unlock()
}

func source(url string, payload []byte, withMD5 bool) Source {
	s := Source{Name: "toy", URL: url + "/data.tgz", File: "data.tgz", Size: int64(len(payload))}
	if withMD5 {
		sum := md5.Sum(payload)
		s.MD5 = hex.EncodeToString(sum[:])
	}
	return s
}

func TestFetchVerifiesAndSkipsExisting(t *testing.T) {
	payload := archive(t)
	srv := &server{payload: payload}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	dir := t.TempDir()
	rec := &recorder{}
	res, err := Fetch(context.Background(), source(ts.URL, payload, true), dir, Options{Progress: rec})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(res.Path)
	if !bytes.Equal(got, payload) || res.Verified != "md5" || res.Downloaded != int64(len(payload)) {
		t.Errorf("result %+v, content equal %v", res, bytes.Equal(got, payload))
	}
	if res.Path != filepath.Join(dir, "toy", "data.tgz") {
		t.Errorf("path %s", res.Path)
	}
	if rec.calls == 0 || rec.last != len(payload)>>10 {
		t.Errorf("progress: %d calls, last %d KiB", rec.calls, rec.last)
	}
	res, err = Fetch(context.Background(), source(ts.URL, payload, true), dir, DefaultOptions())
	if err != nil || !res.Existing || atomic.LoadInt32(&srv.requests) != 1 {
		t.Errorf("second fetch: %+v, %v, %d requests", res, err, srv.requests)
	}
	// SHA-256 takes precedence when given.
	src := source(ts.URL, payload, true)
	sum := sha256.Sum256(payload)
	src.SHA256 = hex.EncodeToString(sum[:])
	if res, err := Fetch(context.Background(), src, dir, DefaultOptions()); err != nil || res.Verified != "sha256" {
		t.Errorf("sha256: %+v %v", res, err)
	}
}

func TestFetchResumesInterruptedTransfer(t *testing.T) {
	payload := archive(t)
	const cut = 1000
	srv := &server{payload: payload, cutAfter: cut, cuts: 1}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	dir := t.TempDir()
	src := source(ts.URL, payload, true)

	_, err := Fetch(context.Background(), src, dir, Options{Retries: 0})
	var ie *InterruptedError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v, want *InterruptedError", err)
	}
	st, err2 := os.Stat(filepath.Join(dir, "toy", "data.tgz.part"))
	if err2 != nil || st.Size() == 0 || st.Size() >= int64(len(payload)) {
		t.Fatalf("partial file: %v, %v", st, err2)
	}
	have := st.Size()
	res, err := Fetch(context.Background(), src, dir, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.Downloaded != int64(len(payload))-have {
		t.Errorf("result %+v, had %d of %d", res, have, len(payload))
	}
	if want := "bytes=" + itoa(have) + "-"; srv.ranges[len(srv.ranges)-1] != want {
		t.Errorf("ranges requested %q, want last %q", srv.ranges, want)
	}
	got, _ := os.ReadFile(res.Path)
	if !bytes.Equal(got, payload) {
		t.Error("resumed file differs")
	}
	if _, err := os.Stat(res.Path + ".part"); !os.IsNotExist(err) {
		t.Error(".part file left behind")
	}

	// With retries, one call survives two cuts.
	srv2 := &server{payload: payload, cutAfter: cut, cuts: 2}
	ts2 := httptest.NewServer(srv2)
	defer ts2.Close()
	res, err = Fetch(context.Background(), source(ts2.URL, payload, true), t.TempDir(), Options{Retries: 3})
	if err != nil || !res.Resumed || srv2.requests != 3 {
		t.Errorf("retries: %+v, %v, %d requests", res, err, srv2.requests)
	}
}

func TestFetchServerIgnoringRanges(t *testing.T) {
	payload := archive(t)
	srv := &server{payload: payload, noRanges: true}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "toy"), 0o755)
	os.WriteFile(filepath.Join(dir, "toy", "data.tgz.part"), []byte("stale junk"), 0o644)
	res, err := Fetch(context.Background(), source(ts.URL, payload, true), dir, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(res.Path)
	if !bytes.Equal(got, payload) {
		t.Error("restart from zero produced a different file")
	}
}

func TestFetchErrors(t *testing.T) {
	payload := archive(t)
	corrupt := append([]byte(nil), payload...)
	corrupt[100] ^= 0xff
	good := httptest.NewServer(&server{payload: payload})
	defer good.Close()
	bad := httptest.NewServer(&server{payload: corrupt})
	defer bad.Close()
	short := httptest.NewServer(&server{payload: payload[:len(payload)-10]})
	defer short.Close()
	offline := httptest.NewServer(http.NotFoundHandler())
	offlineURL := offline.URL
	offline.Close()

	sizeOnly := source(short.URL, payload, false)
	tests := []struct {
		name  string
		src   Source
		check func(error) bool
	}{
		{"corrupt md5", source(bad.URL, payload, true), func(e error) bool { var c *ChecksumError; return errors.As(e, &c) && c.Kind == "md5" }},
		{"short, size only", sizeOnly, func(e error) bool { var c *ChecksumError; return errors.As(e, &c) && c.Kind == "size" }},
		{"offline", source(offlineURL, payload, true), func(e error) bool { var n *NetworkError; return errors.As(e, &n) }},
		{"404", Source{Name: "toy", URL: good.URL + "/missing", File: "x"}, func(e error) bool { var h *HTTPError; return errors.As(e, &h) }},
		{"bad file name", Source{Name: "toy", URL: good.URL, File: "../x"}, func(e error) bool { return e != nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// A "short" server with a stale ranges trick: always start clean.
			_, err := Fetch(context.Background(), tc.src, dir, Options{Retries: 1})
			if !tc.check(err) {
				t.Fatalf("err = %v (%T)", err, err)
			}
			ents, _ := os.ReadDir(filepath.Join(dir, "toy"))
			for _, e := range ents {
				if tc.name != "offline" && tc.name != "404" {
					t.Errorf("file %s left after failure", e.Name())
				}
			}
		})
	}
	// A corrupt file already in place is replaced by a good download.
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "toy"), 0o755)
	os.WriteFile(filepath.Join(dir, "toy", "data.tgz"), corrupt, 0o644)
	res, err := Fetch(context.Background(), source(good.URL, payload, true), dir, DefaultOptions())
	if err != nil || res.Existing {
		t.Fatalf("replace corrupt: %+v %v", res, err)
	}
	// Cancellation returns the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Fetch(ctx, source(good.URL, payload, true), t.TempDir(), DefaultOptions()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("STL_DATA", "/data/here")
	if d, err := DefaultDir(); err != nil || d != "/data/here" {
		t.Errorf("DefaultDir = %q, %v", d, err)
	}
	t.Setenv("STL_DATA", "")
	t.Setenv("XDG_CACHE_HOME", "/cache")
	if d, err := DefaultDir(); err != nil || d != "/cache/stl" {
		t.Errorf("DefaultDir = %q, %v", d, err)
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in          string
		start, size int64
		ok          bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 5-9/*", 5, 0, true},
		{"bytes */200", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
	}
	for _, tc := range tests {
		s, n, ok := parseContentRange(tc.in)
		if s != tc.start || n != tc.size || ok != tc.ok {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", tc.in, s, n, ok)
		}
	}
}

func itoa(n int64) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int64) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

func TestFetchRestartsWhenServerFileChanged(t *testing.T) {
	old := archive(t)
	payload := append(append([]byte(nil), old[:len(old)-100]...), bytes.Repeat([]byte{7}, 100)...) // same size, new content
	srv := &server{payload: old, etag: `"v1"`, cutAfter: 1000, cuts: 1}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	dir := t.TempDir()
	src := source(ts.URL, payload, true) // the checksum of the new version
	if _, err := Fetch(context.Background(), src, dir, Options{}); err == nil {
		t.Fatal("cut transfer: no error")
	}
	if v, _ := os.ReadFile(filepath.Join(dir, "toy", "data.tgz.part.validator")); string(v) != `"v1"` {
		t.Fatalf("validator %q", v)
	}
	srv.payload, srv.etag = payload, `"v2"`
	res, err := Fetch(context.Background(), src, dir, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if res.Downloaded != int64(len(payload)) {
		t.Errorf("downloaded %d bytes, want the whole new file (%d)", res.Downloaded, len(payload))
	}
	if _, err := os.Stat(filepath.Join(dir, "toy", "data.tgz.part.validator")); !os.IsNotExist(err) {
		t.Error("validator file left behind")
	}
}
