// Package fetch downloads the public data sets the project reads: resumable
// (HTTP range requests continue a partial ".part" file), verified (size and,
// where the publisher gives one, a checksum) and atomic (the final name
// appears only once the content is verified). It reports progress through
// progress.Reporter and never prints.
package fetch

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/stl-defense/stl/internal/option"
	"github.com/stl-defense/stl/progress"
)

// Source describes one downloadable file.
type Source struct {
	Name string // short name used on the command line, e.g. "cifar10"
	URL  string
	File string // file name under the data directory's Name/ folder
	Size int64  // expected size in bytes; 0 if not published
	// MD5 and SHA256 are hex digests; either may be empty. A source with
	// neither is checked by size only (Imagenette: fast.ai publishes no
	// checksum), which Fetch's Result reports as Verified == "size".
	MD5, SHA256 string
	About       string // one line for listings
}

// Sources are the data sets `stl data fetch` knows.
var Sources = map[string]Source{
	"cifar10": {
		Name: "cifar10",
		URL:  "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
		File: "cifar-10-binary.tar.gz",
		Size: 170052171,
		MD5:  "c32a1d4ab5d03f1284b67883e8d87530",
		// Published by the authors on https://www.cs.toronto.edu/~kriz/cifar.html.
		About: "CIFAR-10, binary version (Krizhevsky 2009), 162 MiB, md5 published",
	},
	"imagenette": {
		Name:  "imagenette",
		URL:   "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
		File:  "imagenette2-160.tgz",
		About: "Imagenette v2, 160 px (fast.ai), ~94 MiB, no published checksum",
	},
}

// Names returns the names of Sources, sorted.
func Names() []string {
	var n []string
	for k := range Sources {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// DefaultDir returns the data directory: $STL_DATA when set, else "stl"
// under the user cache directory (for example ~/.cache/stl on Linux).
func DefaultDir() (string, error) {
	if d := os.Getenv("STL_DATA"); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("fetch: no data directory: set STL_DATA (%w)", err)
	}
	return filepath.Join(c, "stl"), nil
}

// Options tune Fetch.
type Options struct {
	// Client does the requests; nil means http.DefaultClient.
	Client *http.Client
	// Retries is how many times an interrupted transfer is resumed within
	// one call before giving up (the .part file is kept either way).
	// Default 3.
	Retries int
	// Progress receives byte counts; nil for none.
	Progress progress.Reporter
}

// DefaultOptions returns Retries 3, the default client, no progress.
func DefaultOptions() Options { return Options{Retries: 3} }

// Validate returns an *option.Error (dataset.OptionError) for negative Retries.
func (o Options) Validate() error {
	if o.Retries < 0 {
		return option.New("fetch", "Options.Retries", o.Retries, "want >= 0")
	}
	return nil
}

// Result says what Fetch did.
type Result struct {
	Path       string // final file
	Downloaded int64  // bytes transferred by this call
	Resumed    bool   // a previous partial download was continued
	Existing   bool   // the file was already there and verified
	Verified   string // "md5", "sha256" or "size" (what was checked)
}

// NetworkError reports that the server could not be reached at all, as
// when offline.
type NetworkError struct {
	URL  string
	Dest string // where the file belongs, for copying it in by hand
	Err  error
}

func (e *NetworkError) Error() string {
	return fmt.Sprintf("fetch: cannot reach %s (offline?): %v; download it on a connected machine and copy it to %s", e.URL, e.Err, e.Dest)
}

func (e *NetworkError) Unwrap() error { return e.Err }

// HTTPError reports an unexpected HTTP status.
type HTTPError struct {
	URL    string
	Status string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("fetch: %s: HTTP %s", e.URL, e.Status) }

// ChecksumError reports downloaded content that does not match the
// expected size or digest; the bad file has been removed.
type ChecksumError struct {
	File, Kind, Want, Got string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("fetch: %s: %s mismatch: want %s, got %s (file removed; run again to download afresh)", e.File, e.Kind, e.Want, e.Got)
}

// InterruptedError reports a transfer cut short; the partial file is kept
// and the next Fetch resumes it.
type InterruptedError struct {
	Part       string
	Have, Want int64
	Err        error
}

func (e *InterruptedError) Error() string {
	want := "?"
	if e.Want > 0 {
		want = strconv.FormatInt(e.Want, 10)
	}
	return fmt.Sprintf("fetch: transfer interrupted at %d of %s bytes (%v); partial file %s kept, run again to resume", e.Have, want, e.Err, e.Part)
}

func (e *InterruptedError) Unwrap() error { return e.Err }

// Fetch downloads src into dir/src.Name/src.File and returns what it did.
// A verified existing file is not downloaded again; a corrupt one is
// replaced. A partial download (File + ".part") is resumed with a Range
// request; a server that ignores ranges restarts it from zero. When the
// transfer breaks, Fetch resumes up to opts.Retries times, then returns an
// *InterruptedError and keeps the partial file. The finished file is
// checked against src.Size and the digests given; on mismatch it is
// removed and a *ChecksumError returned. Cancelling ctx stops the transfer
// (the partial file is kept). The server's ETag (or Last-Modified) is kept
// beside the partial file and sent as If-Range, so a file that changed on
// the server is downloaded afresh rather than spliced. Calls for
// different destinations may run concurrently; two calls for the same file
// must not.
func Fetch(ctx context.Context, src Source, dir string, opts Options) (Result, error) {
	if err := opts.Validate(); err != nil {
		return Result{}, err
	}
	if src.URL == "" || src.File == "" || strings.ContainsAny(src.File, `/\`) {
		return Result{}, fmt.Errorf("fetch: source %q needs a URL and a plain file name", src.Name)
	}
	client := opts.Client
	if client == nil {
		client = http.DefaultClient
	}
	rep := progress.Or(opts.Progress)
	folder := filepath.Join(dir, src.Name)
	if err := os.MkdirAll(folder, 0o755); err != nil {
		return Result{}, err
	}
	final := filepath.Join(folder, src.File)
	part := final + ".part"
	res := Result{Path: final}
	if _, err := os.Stat(final); err == nil {
		kind, err := verify(final, src)
		if err == nil {
			res.Existing, res.Verified = true, kind
			return res, nil
		}
		os.Remove(final) // corrupt: download again
	}
	for attempt := 0; ; attempt++ {
		n, resumed, err := transfer(ctx, client, src, part, rep)
		res.Downloaded += n
		res.Resumed = res.Resumed || resumed
		if err == nil {
			break
		}
		var ne *NetworkError
		if errors.As(err, &ne) {
			ne.Dest = final
		}
		var ie *InterruptedError
		if !errors.As(err, &ie) || ctx.Err() != nil || attempt >= opts.Retries {
			return res, err
		}
	}
	kind, err := verify(part, src)
	os.Remove(part + ".validator")
	if err != nil {
		os.Remove(part)
		var ce *ChecksumError
		if errors.As(err, &ce) {
			ce.File = final
		}
		return res, err
	}
	if err := os.Rename(part, final); err != nil {
		return res, err
	}
	res.Verified = kind
	return res, nil
}

// transfer appends the rest of src.URL to part. It returns the bytes
// written and whether it continued a partial file.
func transfer(ctx context.Context, client *http.Client, src Source, part string, rep progress.Reporter) (int64, bool, error) {
	var offset int64
	if st, err := os.Stat(part); err == nil {
		offset = st.Size()
	}
	if src.Size > 0 && offset == src.Size {
		return 0, true, nil // complete, only the rename was missing
	}
	if src.Size > 0 && offset > src.Size {
		os.Remove(part)
		offset = 0
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
	if err != nil {
		return 0, false, err
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		// If the file changed on the server since the partial download
		// began, If-Range makes it send the whole new file (200) instead of
		// a range of it that would not fit what we have.
		if v, err := os.ReadFile(part + ".validator"); err == nil && len(v) > 0 {
			req.Header.Set("If-Range", string(v))
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, false, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			return 0, false, &NetworkError{URL: src.URL, Err: ue.Err}
		}
		return 0, false, &NetworkError{URL: src.URL, Err: err}
	}
	defer resp.Body.Close()
	flags := os.O_CREATE | os.O_WRONLY
	total := src.Size
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			return 0, false, &HTTPError{URL: src.URL, Status: fmt.Sprintf("206 with Content-Range %q for offset %d", resp.Header.Get("Content-Range"), offset)}
		}
		if total <= 0 {
			total = size
		}
		flags |= os.O_APPEND
	case resp.StatusCode == http.StatusOK:
		offset = 0 // server ignores ranges: start over
		flags |= os.O_TRUNC
		if total <= 0 && resp.ContentLength > 0 {
			total = resp.ContentLength
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && offset > 0:
		return 0, true, nil // we already have it all; verify decides
	default:
		return 0, false, &HTTPError{URL: src.URL, Status: resp.Status}
	}
	f, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return 0, false, err
	}
	if offset == 0 {
		// Remember what identifies this version of the file for resuming:
		// a strong ETag, else Last-Modified.
		v := resp.Header.Get("ETag")
		if strings.HasPrefix(v, "W/") {
			v = ""
		}
		if v == "" {
			v = resp.Header.Get("Last-Modified")
		}
		if v != "" {
			os.WriteFile(part+".validator", []byte(v), 0o644)
		} else {
			os.Remove(part + ".validator")
		}
	}
	stage := "fetch " + src.Name
	cw := &countWriter{w: f, done: offset, total: total, stage: stage, rep: rep}
	n, cerr := io.Copy(cw, resp.Body)
	if err := f.Close(); err != nil && cerr == nil {
		cerr = err
	}
	resumed := offset > 0
	if cerr == nil && total > 0 && offset+n < total {
		cerr = io.ErrUnexpectedEOF
	}
	if cerr != nil {
		if ctx.Err() != nil {
			return n, resumed, ctx.Err()
		}
		return n, resumed, &InterruptedError{Part: part, Have: offset + n, Want: total, Err: cerr}
	}
	return n, resumed, nil
}

// parseContentRange parses "bytes start-end/size" (size may be "*").
func parseContentRange(s string) (start, size int64, ok bool) {
	s, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, sz, found := strings.Cut(s, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if sz != "*" {
		if size, err = strconv.ParseInt(sz, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, size, true
}

type countWriter struct {
	w           io.Writer
	done, total int64
	stage       string
	rep         progress.Reporter
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.done += int64(n)
	// Report in KiB so that int never overflows on 32-bit platforms.
	c.rep.Report(c.stage, int(c.done>>10), int(c.total>>10), "KiB")
	return n, err
}

// verify checks size and the strongest digest given. It returns which
// check was made.
func verify(path string, src Source) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var h hash.Hash
	kind, want := "size", ""
	switch {
	case src.SHA256 != "":
		h, kind, want = sha256.New(), "sha256", strings.ToLower(src.SHA256)
	case src.MD5 != "":
		h, kind, want = md5.New(), "md5", strings.ToLower(src.MD5)
	default:
		h = nopHash{}
	}
	n, err := io.Copy(h, f)
	if err != nil {
		return "", err
	}
	if src.Size > 0 && n != src.Size {
		return "", &ChecksumError{File: path, Kind: "size", Want: strconv.FormatInt(src.Size, 10), Got: strconv.FormatInt(n, 10)}
	}
	if n == 0 {
		return "", &ChecksumError{File: path, Kind: "size", Want: "> 0", Got: "0"}
	}
	if want != "" {
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return "", &ChecksumError{File: path, Kind: kind, Want: want, Got: got}
		}
	}
	return kind, nil
}

// nopHash discards its input; used when no digest is published.
type nopHash struct{}

func (nopHash) Write(p []byte) (int, error) { return len(p), nil }
func (nopHash) Sum(b []byte) []byte         { return b }
func (nopHash) Reset()                      {}
func (nopHash) Size() int                   { return 0 }
func (nopHash) BlockSize() int              { return 1 }
