package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stl-defense/stl/internal/safefile"
)

// Partial holds the finished chunks of a long computation that is still
// running: a stage that projects or attacks thousands of images in batches,
// or `stl defend`. Each chunk (one batch's output) is written atomically the
// moment it is done, so a killed process loses at most the chunk it was
// working on, and the same command run again reloads the finished chunks
// instead of recomputing them.
//
// A Partial belongs to one key, the identity of the computation (its inputs
// and settings): chunks written under another key are discarded when the
// Partial is opened, so a changed setting never serves stale chunks. Chunks
// are checked on reading (length and CRC-32); a damaged one reads as absent
// and is recomputed. Callers keep chunk boundaries fixed for a key (the batch
// size is part of it), and a chunk's content must not depend on which
// chunks were reloaded, so a resumed computation is bit-identical to an
// uninterrupted one.
//
// A Partial is safe for concurrent use on different chunk indices.
type Partial struct {
	dir string
	key Key
}

// partialKeyFile records the key of a Partial's directory.
const partialKeyFile = "KEY"

// chunkMagic starts every chunk file.
const chunkMagic = "STLCHNK1"

// OpenPartial opens (creating it if needed) the Partial in dir for key. When
// dir holds the chunks of another key, or no key at all, they are removed.
// It fails early, before any work is done, when dir cannot be written.
func OpenPartial(dir string, key Key) (*Partial, error) {
	if key == "" {
		return nil, errors.New("cache: partial results need a key")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache: partial results: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, partialKeyFile))
	if err != nil || strings.TrimSpace(string(b)) != string(key) {
		if err := clearChunks(dir); err != nil {
			return nil, err
		}
		if err := safefile.WriteBytes(filepath.Join(dir, partialKeyFile), []byte(string(key)+"\n")); err != nil {
			return nil, fmt.Errorf("cache: partial results: %w", err)
		}
	}
	return &Partial{dir: dir, key: key}, nil
}

// clearChunks removes every chunk file of dir.
func clearChunks(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("cache: partial results: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "chunk-") || strings.HasPrefix(e.Name(), ".chunk-") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("cache: partial results: %w", err)
			}
		}
	}
	return nil
}

// Dir returns the Partial's directory.
func (p *Partial) Dir() string { return p.dir }

func (p *Partial) path(i int) string {
	return filepath.Join(p.dir, "chunk-"+strconv.Itoa(i))
}

// Save stores chunk i: its float32 values and optional integers (e.g. the
// cluster each image went to). It replaces an earlier chunk i atomically.
func (p *Partial) Save(i int, values []float32, ints []int32) error {
	if i < 0 {
		return fmt.Errorf("cache: chunk %d: negative index", i)
	}
	b := make([]byte, 0, len(chunkMagic)+16+4*len(values)+4*len(ints)+4)
	b = append(b, chunkMagic...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(values)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(ints)))
	for _, v := range values {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	for _, v := range ints {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	if err := safefile.WriteBytes(p.path(i), b); err != nil {
		return fmt.Errorf("cache: chunk %d: %w", i, err)
	}
	return nil
}

// Load fills values and ints with chunk i and reports whether it was there.
// A chunk whose lengths differ from len(values) and len(ints), or whose
// checksum fails, is reported absent (and will be overwritten by Save); only
// an unreadable directory is an error.
func (p *Partial) Load(i int, values []float32, ints []int32) (bool, error) {
	b, err := os.ReadFile(p.path(i))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cache: chunk %d: %w", i, err)
	}
	head := len(chunkMagic) + 16
	want := head + 4*len(values) + 4*len(ints) + 4
	if len(b) != want || string(b[:len(chunkMagic)]) != chunkMagic ||
		binary.LittleEndian.Uint64(b[len(chunkMagic):]) != uint64(len(values)) ||
		binary.LittleEndian.Uint64(b[len(chunkMagic)+8:]) != uint64(len(ints)) ||
		crc32.ChecksumIEEE(b[:want-4]) != binary.LittleEndian.Uint32(b[want-4:]) {
		return false, nil
	}
	off := head
	for k := range values {
		values[k] = math.Float32frombits(binary.LittleEndian.Uint32(b[off:]))
		off += 4
	}
	for k := range ints {
		ints[k] = int32(binary.LittleEndian.Uint32(b[off:]))
		off += 4
	}
	return true, nil
}

// Fill fills values and ints with chunk i: it reloads the chunk when it was
// saved, and otherwise calls compute to fill them and saves the result as
// chunk i. It reports whether the chunk was reloaded. On a nil Partial it
// only calls compute, so callers without partial results share the loop.
func (p *Partial) Fill(i int, values []float32, ints []int32, compute func() error) (reloaded bool, err error) {
	if p != nil {
		if ok, err := p.Load(i, values, ints); err != nil || ok {
			return ok, err
		}
	}
	if err := compute(); err != nil {
		return false, err
	}
	if p != nil {
		return false, p.Save(i, values, ints)
	}
	return false, nil
}

// Remove deletes the Partial's directory, once the computation's output is
// published.
func (p *Partial) Remove() error {
	if err := os.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("cache: partial results: %w", err)
	}
	return nil
}
