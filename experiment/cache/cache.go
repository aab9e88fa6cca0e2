// Package cache is the stage cache of an experiment run: a run directory in
// which every stage of the pipeline (train the classifier, build the defense,
// project a set, attack, evaluate) stores its output under a key derived from
// its own configuration and the keys of the stages it depends on.
//
// A stage is reused only when the key stored with its output equals the key
// asked for, so a changed setting recomputes exactly the stages that depend on
// it and never serves a stale result. A stage's output is built in a
// temporary directory and published by renaming it into place after its
// manifest is written (internal/safefile), so an interrupted run leaves either
// a complete stage or none, and running the same command again resumes after
// the last complete stage.
package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stl-defense/stl/internal/safefile"
)

// ManifestFile is the name of the file, inside a stage's directory, that
// records the stage's key. It is written last: a directory without it is not
// a finished stage.
const ManifestFile = "stage.json"

// Key identifies the exact configuration of a stage and, through the keys of
// its dependencies, of everything it was computed from. It is the hex SHA-256
// of a canonical JSON document.
type Key string

// Short returns the first 12 hex digits of k, enough to tell keys apart in a
// report.
func (k Key) Short() string {
	if len(k) > 12 {
		return string(k[:12])
	}
	return string(k)
}

// NewKey derives the key of the stage named stage from its configuration
// (any value that encodes to JSON) and the keys of the stages it reads. The
// configuration is encoded canonically (object keys sorted, no insignificant
// space), so the key does not depend on struct field order or map iteration;
// the order of deps does matter (callers list them in a fixed order).
func NewKey(stage string, config any, deps ...Key) (Key, error) {
	c, err := Canonical(config)
	if err != nil {
		return "", fmt.Errorf("cache: key of stage %q: %w", stage, err)
	}
	doc := struct {
		Stage  string          `json:"stage"`
		Config json.RawMessage `json:"config"`
		Deps   []Key           `json:"deps"`
	}{stage, c, deps}
	if doc.Deps == nil {
		doc.Deps = []Key{}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("cache: key of stage %q: %w", stage, err)
	}
	sum := sha256.Sum256(b)
	return Key(hex.EncodeToString(sum[:])), nil
}

// Canonical returns the canonical JSON encoding of v: v is encoded, decoded
// into generic maps and slices, and encoded again, which sorts every object's
// keys; numbers keep their shortest decimal form.
func Canonical(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var g any
	if err := d.Decode(&g); err != nil {
		return nil, err
	}
	return json.Marshal(g)
}

// Manifest is what a finished stage records next to its output.
type Manifest struct {
	Stage    string          `json:"stage"`
	Key      Key             `json:"key"`
	Deps     []Key           `json:"deps,omitempty"`
	Config   json.RawMessage `json:"config,omitempty"`
	Started  time.Time       `json:"started"`
	Finished time.Time       `json:"finished"`
	// Seconds is the wall time the stage took when it was computed.
	Seconds float64 `json:"seconds"`
}

// Timing is one line of a run's stage timing table.
type Timing struct {
	Stage string `json:"stage"`
	Key   Key    `json:"key"`
	// Seconds is the wall time of the computation, also when the stage was
	// served from the cache in this run (then it is the original time).
	Seconds float64 `json:"seconds"`
	// Cached reports whether this run reused the stored output.
	Cached bool `json:"cached"`
}

// Store is a run directory. Stages are subdirectories named after the stage.
// A Store is safe for concurrent use by several goroutines as long as they
// work on different stages.
type Store struct {
	dir  string
	now  func() time.Time
	lock *os.File

	mu      sync.Mutex
	timings []Timing
}

var stageName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// NameError reports a stage name that cannot be used as a directory name.
type NameError struct{ Name string }

func (e *NameError) Error() string {
	return fmt.Sprintf("cache: invalid stage name %q (want letters, digits, '.', '_', '+', '-')", e.Name)
}

// LockFile is the file of a store's directory that Open locks, so that two
// processes never work in one run directory at once.
const LockFile = ".lock"

var errLocked = errors.New("locked")

// LockedError reports a run directory in use by another process.
type LockedError struct{ Dir string }

func (e *LockedError) Error() string {
	return fmt.Sprintf("cache: %s is in use by another process (another stl run?)", e.Dir)
}

// Open creates dir if needed and returns the Store in it, holding the
// directory's lock until Close. It returns a *LockedError when another
// process holds the lock. Temporary directories left by an interrupted run
// are removed.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("cache: empty run directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if err := lockFile(lock); err != nil {
		lock.Close()
		if errors.Is(err, errLocked) {
			return nil, &LockedError{dir}
		}
		return nil, fmt.Errorf("cache: lock %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), ".tmp-") {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	return &Store{dir: dir, now: time.Now, lock: lock}, nil
}

// Close releases the directory's lock. The Store must not be used after.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

// Dir returns the run directory.
func (s *Store) Dir() string { return s.dir }

// Path returns the directory of the named stage (which may not exist yet).
func (s *Store) Path(stage string) string { return filepath.Join(s.dir, stage) }

// Lookup returns the manifest of the named stage when its stored key equals
// key. It returns ok == false when the stage is absent, unfinished or was
// computed under another key; a manifest that exists but cannot be parsed is
// treated as absent, so it is recomputed rather than trusted.
func (s *Store) Lookup(stage string, key Key) (m Manifest, ok bool) {
	b, err := os.ReadFile(filepath.Join(s.Path(stage), ManifestFile))
	if err != nil {
		return Manifest{}, false
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, false
	}
	if m.Key != key || m.Stage != stage {
		return Manifest{}, false
	}
	return m, true
}

// Stale reports whether the named stage holds output computed under a key
// other than key, i.e. whether Do will replace existing output.
func (s *Store) Stale(stage string, key Key) bool {
	if _, err := os.Stat(s.Path(stage)); err != nil {
		return false
	}
	_, ok := s.Lookup(stage, key)
	return !ok
}

// BuildFunc computes a stage's output into dir, an empty directory that
// becomes the stage's directory when BuildFunc returns nil. It must check
// ctx for long work.
type BuildFunc func(ctx context.Context, dir string) error

// Do returns the directory of the named stage, computing it with build when
// no output with the given key is stored. config is recorded in the manifest
// for people reading the run directory; deps are the keys the stage was
// derived from (already folded into key by NewKey).
//
// When build fails or ctx is cancelled, nothing is published and any older
// output of the stage is left as it was (it will still not be reused under
// the new key). Do records the stage's timing (see Timings).
func (s *Store) Do(ctx context.Context, stage string, key Key, config any, deps []Key, build BuildFunc) (dir string, cached bool, err error) {
	if !stageName.MatchString(stage) {
		return "", false, &NameError{stage}
	}
	final := s.Path(stage)
	if m, ok := s.Lookup(stage, key); ok {
		s.record(Timing{Stage: stage, Key: key, Seconds: m.Seconds, Cached: true})
		return final, true, nil
	}
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	tmp, err := os.MkdirTemp(s.dir, ".tmp-"+stage+"-")
	if err != nil {
		return "", false, fmt.Errorf("cache: stage %s: %w", stage, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	start := s.now()
	if err = build(ctx, tmp); err != nil {
		return "", false, fmt.Errorf("stage %s: %w", stage, err)
	}
	if err = ctx.Err(); err != nil {
		return "", false, err
	}
	end := s.now()
	m := Manifest{Stage: stage, Key: key, Deps: deps, Started: start.UTC(), Finished: end.UTC(), Seconds: end.Sub(start).Seconds()}
	if config != nil {
		if m.Config, err = Canonical(config); err != nil {
			return "", false, fmt.Errorf("cache: stage %s: config: %w", stage, err)
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", false, fmt.Errorf("cache: stage %s: %w", stage, err)
	}
	if err = safefile.WriteBytes(filepath.Join(tmp, ManifestFile), append(b, '\n')); err != nil {
		return "", false, fmt.Errorf("cache: stage %s: %w", stage, err)
	}
	// Remove the old output first: a crash between the two steps leaves no
	// stage, which is recomputed, never a stale one.
	if err = os.RemoveAll(final); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("cache: stage %s: %w", stage, err)
	}
	if err = os.Rename(tmp, final); err != nil {
		return "", false, fmt.Errorf("cache: stage %s: %w", stage, err)
	}
	s.record(Timing{Stage: stage, Key: key, Seconds: m.Seconds})
	return final, false, nil
}

func (s *Store) record(t Timing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timings = append(s.timings, t)
}

// Timings returns the timing of every stage Do was called for, in call
// order.
func (s *Store) Timings() []Timing {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Timing(nil), s.timings...)
}

// Stages lists the names of the finished stages in the run directory, sorted.
func (s *Store) Stages() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.dir, e.Name(), ManifestFile)); err == nil {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}
