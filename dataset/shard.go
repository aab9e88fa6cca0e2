package dataset

import (
	"fmt"
	"strconv"
	"strings"
)

// Shard names one of Count contiguous parts of a set of images, numbered
// from 0, so that a job over many images can run as Count independent
// tasks (a Slurm array, a Kubernetes Indexed Job, a distributed pipeline)
// whose outputs, concatenated in Index order, equal one task's over all of
// them. The zero Shard is the whole set.
type Shard struct {
	Index, Count int
}

// ParseShard parses "i/n" with 0 <= i < n; the empty string is the zero
// Shard (everything).
func ParseShard(s string) (Shard, error) {
	if s == "" {
		return Shard{}, nil
	}
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(strings.TrimSpace(a))
	n, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("shard %q: want i/n, e.g. 0/4 for the first of 4 parts", s)
	}
	sh := Shard{Index: i, Count: n}
	return sh, sh.Validate()
}

// Validate checks 0 <= Index < Count, or the zero Shard.
func (s Shard) Validate() error {
	if s == (Shard{}) {
		return nil
	}
	if s.Count < 1 || s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("shard %d/%d: want 0 <= i < n", s.Index, s.Count)
	}
	return nil
}

// Whole reports whether s is the zero Shard, the whole set.
func (s Shard) Whole() bool { return s.Count <= 1 }

// Range returns the images [lo, hi) of shard s of a set of n images:
// lo = floor(Index*n/Count), hi = floor((Index+1)*n/Count), so the shards
// partition [0, n) in order and their sizes differ by at most one.
func (s Shard) Range(n int) (lo, hi int) {
	if s.Whole() {
		return 0, n
	}
	return s.Index * n / s.Count, (s.Index + 1) * n / s.Count
}

// BatchRange returns the images [lo, hi) of shard s of n images cut at
// the boundaries of batches of batch images: s takes the batches Range
// gives of the ceil(n/batch) batches, so that every image is processed in
// the batch it falls in when the set is processed whole. hi <= lo when s
// holds no batch (more shards than batches).
func (s Shard) BatchRange(n, batch int) (lo, hi int) {
	blo, bhi := s.Range((n + batch - 1) / batch)
	return blo * batch, min(bhi*batch, n)
}

// String returns "i/n", or "" for the whole set.
func (s Shard) String() string {
	if s == (Shard{}) {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// Shard returns the images of shard sh of s (s itself for the whole set),
// sharing no memory with s.
func (s *Set) Shard(sh Shard) *Set {
	if sh.Whole() {
		return s
	}
	lo, hi := sh.Range(s.Len())
	idx := make([]int, hi-lo)
	for i := range idx {
		idx[i] = lo + i
	}
	return s.Subset(idx)
}
