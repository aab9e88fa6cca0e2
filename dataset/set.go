package dataset

import (
	"fmt"
	"math/rand"
	"sort"

	"github.com/stl-defense/stl/tensor"
)

// Shape is the geometry of one image: channels, height and width.
type Shape struct{ C, H, W int }

// Pixels returns C*H*W, the number of values of one image.
func (s Shape) Pixels() int { return s.C * s.H * s.W }

// RecordSize returns the size in bytes of one binary record: a label byte
// and C*H*W pixel bytes.
func (s Shape) RecordSize() int { return 1 + s.Pixels() }

func (s Shape) String() string { return fmt.Sprintf("%dx%dx%d", s.C, s.H, s.W) }

// valid reports whether every dimension is positive and an image is not
// absurdly large (a guard before allocating from file headers).
func (s Shape) valid() bool {
	return s.C > 0 && s.H > 0 && s.W > 0 && s.C <= 4 && s.H <= 1<<14 && s.W <= 1<<14
}

// Common shapes.
var (
	CIFARShape  = Shape{3, 32, 32} // CIFAR-10
	ImageNet64  = Shape{3, 64, 64} // ImageNet-10 at 64 px (paper, Table 2)
	ImageNet128 = Shape{3, 128, 128}
)

// CIFAR10Classes are the CIFAR-10 class names, index = label, as in the
// official batches.meta.txt.
var CIFAR10Classes = []string{"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}

// Set is a labelled image set held in memory.
//
// Images has shape (N, C, H, W) with float32 values in [0, 1]; Labels has N
// entries in [0, len(Classes)); Classes names each label; Name says where
// the set came from (for example "cifar10/test" or "sample:cifar10/train").
// A Set is not safe for concurrent mutation; concurrent reads are fine.
type Set struct {
	Images  *tensor.Tensor
	Labels  []int
	Classes []string
	Name    string
}

// NewSet allocates a zero-filled set of n images of the given shape.
func NewSet(name string, n int, shape Shape, classes []string) *Set {
	return &Set{
		Images:  tensor.New(n, shape.C, shape.H, shape.W),
		Labels:  make([]int, n),
		Classes: append([]string(nil), classes...),
		Name:    name,
	}
}

// Len returns the number of images.
func (s *Set) Len() int { return len(s.Labels) }

// Shape returns the geometry of one image. It assumes a valid set.
func (s *Set) Shape() Shape {
	if s.Images == nil || len(s.Images.Shape) != 4 {
		return Shape{}
	}
	return Shape{s.Images.Shape[1], s.Images.Shape[2], s.Images.Shape[3]}
}

// Image returns image i as a view (no copy) of C*H*W values in CHW order.
// It panics when i is out of range.
func (s *Set) Image(i int) []float32 {
	p := s.Shape().Pixels()
	return s.Images.Data[i*p : (i+1)*p]
}

// Validate checks that Images is (N, C, H, W) with N == len(Labels), that
// every label is in range, that every class name passes CheckClassName and that every pixel is finite and in [0, 1]. It
// returns a *tensor.ShapeError or a *FormatError (with File = Name).
func (s *Set) Validate() error {
	if s.Images == nil {
		return formatErr(s.Name, -1, ErrShape, "no image tensor")
	}
	n, c, h, w, err := s.Images.NCHW()
	if err != nil {
		return err
	}
	if err := s.Images.Validate(); err != nil {
		return err
	}
	if n != len(s.Labels) {
		return formatErr(s.Name, -1, ErrCount, "%d images but %d labels", n, len(s.Labels))
	}
	if !(Shape{c, h, w}).valid() && n > 0 {
		return formatErr(s.Name, -1, ErrShape, "bad image shape %dx%dx%d", c, h, w)
	}
	for i, l := range s.Labels {
		if l < 0 || l >= len(s.Classes) {
			return formatErr(s.Name, i, ErrLabel, "label %d, %d classes", l, len(s.Classes))
		}
	}
	for i, c := range s.Classes {
		if err := CheckClassName(c); err != nil {
			return formatErr(s.Name, -1, err, "class %d", i)
		}
	}
	p := c * h * w
	for i, v := range s.Images.Data {
		if v < 0 || v > 1 {
			return formatErr(s.Name, i/p, nil, "pixel value %v outside [0, 1]", v)
		}
	}
	return nil
}

// Subset returns a new set holding copies of the images idx, in that order
// (an index may repeat). It panics on an index out of range, a programming
// error.
func (s *Set) Subset(idx []int) *Set {
	sh := s.Shape()
	p := sh.Pixels()
	out := NewSet(s.Name, len(idx), sh, s.Classes)
	for j, i := range idx {
		if i < 0 || i >= s.Len() {
			panic(fmt.Sprintf("dataset: Subset index %d out of range [0, %d)", i, s.Len()))
		}
		copy(out.Images.Data[j*p:(j+1)*p], s.Images.Data[i*p:(i+1)*p])
		out.Labels[j] = s.Labels[i]
	}
	return out
}

// Head returns a copy of the first min(n, Len) images.
func (s *Set) Head(n int) *Set {
	if n > s.Len() {
		n = s.Len()
	}
	if n < 0 {
		n = 0
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return s.Subset(idx)
}

// ClassCounts returns the number of images of each class.
func (s *Set) ClassCounts() []int {
	counts := make([]int, len(s.Classes))
	for _, l := range s.Labels {
		if l >= 0 && l < len(counts) {
			counts[l]++
		}
	}
	return counts
}

// BalancedIndices picks n indices with the classes as equal as possible:
// each of the K classes gets n/K, and the first n%K classes one more. Within
// a class the images are drawn uniformly without replacement by a
// math/rand source seeded with seed, so the choice depends only on the
// labels, n and seed. The result is in ascending index order. It returns an
// error when n is negative or a class has too few images.
func BalancedIndices(labels []int, numClasses, n int, seed int64) ([]int, error) {
	if n < 0 || numClasses <= 0 {
		return nil, fmt.Errorf("dataset: balanced subset of %d images over %d classes", n, numClasses)
	}
	byClass := make([][]int, numClasses)
	for i, l := range labels {
		if l < 0 || l >= numClasses {
			return nil, formatErr("labels", i, ErrLabel, "label %d, %d classes", l, numClasses)
		}
		byClass[l] = append(byClass[l], i)
	}
	rng := rand.New(rand.NewSource(seed))
	var idx []int
	for c, members := range byClass {
		want := n / numClasses
		if c < n%numClasses {
			want++
		}
		if want > len(members) {
			return nil, fmt.Errorf("dataset: balanced subset of %d needs %d images of class %d, have %d", n, want, c, len(members))
		}
		// Partial Fisher-Yates: the first want entries are a uniform draw.
		for k := 0; k < want; k++ {
			j := k + rng.Intn(len(members)-k)
			members[k], members[j] = members[j], members[k]
		}
		idx = append(idx, members[:want]...)
	}
	sort.Ints(idx)
	return idx, nil
}

// BalancedSubset returns a copy of n images, class-balanced and drawn
// deterministically under seed (see BalancedIndices), in the set's order.
func (s *Set) BalancedSubset(n int, seed int64) (*Set, error) {
	idx, err := BalancedIndices(s.Labels, len(s.Classes), n, seed)
	if err != nil {
		return nil, err
	}
	return s.Subset(idx), nil
}

// Permutation returns a seeded random permutation of [0, n).
func Permutation(n int, seed int64) []int {
	return rand.New(rand.NewSource(seed)).Perm(n)
}

// Shuffle returns a copy of the set in a seeded random order.
func (s *Set) Shuffle(seed int64) *Set { return s.Subset(Permutation(s.Len(), seed)) }

// Concat returns a new set with the images of every part in order. All parts
// must have the same image shape; the classes of the first part are kept.
func Concat(name string, parts ...*Set) (*Set, error) {
	if len(parts) == 0 {
		return nil, formatErr(name, -1, ErrEmpty, "nothing to concatenate")
	}
	sh := parts[0].Shape()
	n := 0
	for _, p := range parts {
		if p.Shape() != sh {
			return nil, formatErr(p.Name, -1, ErrShape, "image shape %v, want %v", p.Shape(), sh)
		}
		n += p.Len()
	}
	out := NewSet(name, n, sh, parts[0].Classes)
	out.Images.Data = out.Images.Data[:0]
	out.Labels = out.Labels[:0]
	for _, p := range parts {
		out.Images.Data = append(out.Images.Data, p.Images.Data...)
		out.Labels = append(out.Labels, p.Labels...)
	}
	return out, nil
}
