package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/tensor"
)

// loadData loads, limits and fingerprints the data.
func (r *runner) loadData(ctx context.Context) error {
	r.rep.Report("load data", 0, 1, r.cfg.Data)
	train, test, err := r.b.Data(ctx, r.cfg)
	if err != nil {
		return fmt.Errorf("load data %s: %w", r.cfg.Data, err)
	}
	if err := train.Validate(); err != nil {
		return fmt.Errorf("training set: %w", err)
	}
	if err := test.Validate(); err != nil {
		return fmt.Errorf("test set: %w", err)
	}
	if train.Shape() != test.Shape() {
		return fmt.Errorf("training images are %v, test images %v", train.Shape(), test.Shape())
	}
	if r.cfg.Limit > 0 && r.cfg.Limit < train.Len() {
		if train, err = train.BalancedSubset(r.cfg.Limit, r.cfg.Seed); err != nil {
			return err
		}
	}
	if r.cfg.TestLimit > 0 && r.cfg.TestLimit < test.Len() {
		if test, err = test.BalancedSubset(r.cfg.TestLimit, r.cfg.Seed); err != nil {
			return err
		}
	}
	r.train, r.test = train, test
	// The data key is derived from the pixels and labels themselves, so a
	// changed file is never served from the cache.
	r.dataKey, err = cache.NewKey("data", map[string]string{
		"train": fingerprint(train), "test": fingerprint(test),
	})
	if err != nil {
		return err
	}
	n := r.cfg.AttackSubset
	if n == 0 {
		n = test.Len()
	}
	r.subset, err = metrics.BalancedSubset(test.Labels, len(test.Classes), n, uint64(r.cfg.Seed))
	if err != nil {
		return err
	}
	sub := test.Subset(r.subset)
	r.x0, r.y0 = sub.Images, sub.Labels
	if r.subsetKey, err = cache.NewKey("subset", map[string]any{"n": len(r.subset), "seed": r.cfg.Seed}, r.dataKey); err != nil {
		return err
	}
	if err := r.whiteBoxSubset(len(test.Classes)); err != nil {
		return err
	}
	r.rep.Report("load data", 1, 1, fmt.Sprintf("%d train, %d test, %d attacked", train.Len(), test.Len(), len(r.subset)))
	return nil
}

// fingerprint is the hex SHA-256 of a set's shape, pixels and labels.
func fingerprint(s *dataset.Set) string {
	h := sha256.New()
	var buf [8]byte
	for _, d := range s.Images.Shape {
		binary.LittleEndian.PutUint64(buf[:], uint64(d))
		h.Write(buf[:])
	}
	b := make([]byte, 0, 1<<16)
	for _, v := range s.Images.Data {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		if len(b) == cap(b) {
			h.Write(b)
			b = b[:0]
		}
	}
	h.Write(b)
	for _, l := range s.Labels {
		binary.LittleEndian.PutUint64(buf[:], uint64(l))
		h.Write(buf[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// whiteBoxSubset picks the images of the white-box evaluation
// (Config.WhiteBoxSubset): a class-balanced subset of the attacked images
// seeded by the run seed, or all of them when the setting is 0 or not
// smaller than their number. In the latter case the subset's key is the
// attacked images' own, so that the white-box stages keep the keys they had
// before the setting existed.
func (r *runner) whiteBoxSubset(classes int) error {
	n := r.cfg.WhiteBoxSubset
	if n == 0 || n >= len(r.subset) {
		r.wbIdx = make([]int, len(r.subset))
		for i := range r.wbIdx {
			r.wbIdx[i] = i
		}
		r.wbX, r.wbY, r.wbSubsetKey = r.x0, r.y0, r.subsetKey
		return nil
	}
	idx, err := metrics.BalancedSubset(r.y0, classes, n, uint64(r.cfg.Seed))
	if err != nil {
		return err
	}
	key, err := cache.NewKey("whitebox-subset", map[string]any{"n": len(idx), "seed": r.cfg.Seed}, r.subsetKey)
	if err != nil {
		return err
	}
	per := len(r.x0.Data) / r.x0.Shape[0]
	x := tensor.New(append([]int{len(idx)}, r.x0.Shape[1:]...)...)
	y := make([]int, len(idx))
	for i, j := range idx {
		copy(x.Data[i*per:(i+1)*per], r.x0.Data[j*per:(j+1)*per])
		y[i] = r.y0[j]
	}
	r.wbIdx, r.wbX, r.wbY, r.wbSubsetKey = idx, x, y, key
	return nil
}
