package defense

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/stl-defense/stl/cluster"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// Encoder maps images to perceptual latent codes. The stratified STL uses a
// denoising auto-encoder's encoder (section 3.4); nn's DAE satisfies it.
type Encoder interface {
	// Encode returns the (N, D) latent codes of x, an (N, C, R, R) batch of
	// images in [0,1] at the encoder's resolution R.
	Encode(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error)
}

// EncodeBatch is the number of images a Stratifier passes to its Encoder
// at a time; it bounds memory and sets how often ctx is checked.
const EncodeBatch = 256

// Stratifier assigns images to the clusters of the stratified
// quasi-natural image space (section 3.4, Figure 2): an image is downsampled
// to Resolution x Resolution by area averaging, encoded by the DAE, reduced
// by PCA, and given the cluster voted by its nearest training codes (or,
// made Transductive, the k-means label of its code clustered with the
// training codes and the rest of its set; see AssignTransductive).
// A Stratifier is safe for concurrent use when its Encoder is.
type Stratifier struct {
	encoder    Encoder
	resolution int
	channels   int
	clusters   int
	pca        *cluster.PCA
	vote       *cluster.KNN
	// codes are the training codes and centers the k-means centres a
	// transductive Stratifier starts from; nil for the kNN vote.
	codes, centers *tensor.Tensor
}

// StratifierError reports inconsistent parts of a stratification model.
type StratifierError struct{ Reason string }

func (e *StratifierError) Error() string { return "defense: stratifier: " + e.Reason }

// NewStratifier assembles a stratification model from its fitted parts:
// the encoder and its input resolution and channel count, the PCA fitted on
// the training codes, the training codes after PCA (an (N, K) tensor) with
// their k-means labels in [0, clusters), and the vote options. It copies
// what it keeps. It returns a *StratifierError when the parts disagree and
// the cluster package's errors for bad vote options.
func NewStratifier(enc Encoder, resolution, channels int, pca *cluster.PCA, codes *tensor.Tensor, labels []int, clusters int, vote cluster.KNNOptions) (*Stratifier, error) {
	switch {
	case enc == nil:
		return nil, &StratifierError{"nil encoder"}
	case resolution < 1:
		return nil, &StratifierError{fmt.Sprintf("resolution %d, want >= 1", resolution)}
	case channels < 1:
		return nil, &StratifierError{fmt.Sprintf("channels %d, want >= 1", channels)}
	case clusters < 1:
		return nil, &StratifierError{fmt.Sprintf("%d clusters, want >= 1", clusters)}
	}
	if err := pca.Validate(); err != nil {
		return nil, err
	}
	if codes == nil || len(codes.Shape) != 2 || codes.Shape[1] != pca.Out() {
		var got []int
		if codes != nil {
			got = codes.Shape
		}
		return nil, &tensor.ShapeError{Op: "defense.NewStratifier codes", Want: []int{-1, pca.Out()}, Got: got}
	}
	seen := make([]bool, clusters)
	for i, l := range labels {
		if l < 0 || l >= clusters {
			return nil, &StratifierError{fmt.Sprintf("training code %d has cluster %d, want [0, %d)", i, l, clusters)}
		}
		seen[l] = true
	}
	for c, ok := range seen {
		if !ok {
			return nil, &StratifierError{fmt.Sprintf("cluster %d has no training codes", c)}
		}
	}
	v, err := cluster.NewKNN(codes, labels, vote)
	if err != nil {
		return nil, err
	}
	return &Stratifier{encoder: enc, resolution: resolution, channels: channels, clusters: clusters, pca: pca, vote: v, codes: codes.Clone()}, nil
}

// Transductive returns a copy of s that assigns clusters as
// AssignTransductive describes: Lloyd's k-means on the training codes and
// the codes of the images assigned together, started from centers, the
// (Clusters, K) centres of the training codes' k-means. It copies centers.
func (s *Stratifier) Transductive(centers *tensor.Tensor) (*Stratifier, error) {
	if centers == nil || !slices.Equal(centers.Shape, []int{s.clusters, s.pca.Out()}) {
		var got []int
		if centers != nil {
			got = centers.Shape
		}
		return nil, &tensor.ShapeError{Op: "defense.Stratifier.Transductive centres", Want: []int{s.clusters, s.pca.Out()}, Got: got}
	}
	if err := centers.Validate(); err != nil {
		return nil, fmt.Errorf("defense: k-means centres: %w", err)
	}
	t := *s
	t.centers = centers.Clone()
	return &t, nil
}

// IsTransductive reports whether s assigns clusters transductively.
func (s *Stratifier) IsTransductive() bool { return s.centers != nil }

// Clusters returns the number of clusters.
func (s *Stratifier) Clusters() int { return s.clusters }

// Resolution returns the side of the images the encoder takes.
func (s *Stratifier) Resolution() int { return s.resolution }

// Channels returns the channel count of the images the encoder takes.
func (s *Stratifier) Channels() int { return s.channels }

// Codes returns the PCA-reduced latent codes, an (N, K) tensor, of x, an
// (N, C, H, W) batch of any size H x W with the model's channel count.
// It encodes EncodeBatch images at a time and checks ctx between batches.
func (s *Stratifier) Codes(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if _, _, _, _, err := checkImages("defense.Stratifier.Codes", x, s.channels); err != nil {
		return nil, err
	}
	return encodeCodes(ctx, s.encoder, s.pca, s.resolution, x, nil)
}

// Assign returns the cluster of every image of x, an (N, C, H, W) batch,
// by the kNN vote of its code among the training codes; a transductive
// Stratifier clusters the codes of x, as one set, with the training codes.
func (s *Stratifier) Assign(ctx context.Context, x *tensor.Tensor) ([]int, error) {
	if _, _, _, _, err := checkImages("defense.Stratifier.Assign", x, s.channels); err != nil {
		return nil, err
	}
	return s.assign(ctx, x)
}

// SetClusters returns a function giving the clusters of images lo..hi-1
// of x, an (N, C, H, W) batch, as part of the set x: with the kNN vote
// each call assigns its images on its own (Assign); a transductive
// Stratifier assigns the whole of x once, at the first call, and x must
// not change until the last. The function is safe for concurrent use.
func (s *Stratifier) SetClusters(x *tensor.Tensor) (func(ctx context.Context, lo, hi int) ([]int, error), error) {
	if _, _, _, _, err := checkImages("defense.Stratifier.SetClusters", x, s.channels); err != nil {
		return nil, err
	}
	return s.setClusters(x), nil
}

// setClusters is SetClusters on a batch checked by the caller.
func (s *Stratifier) setClusters(x *tensor.Tensor) func(ctx context.Context, lo, hi int) ([]int, error) {
	n := x.Shape[0]
	var (
		once sync.Once
		all  []int
		err  error
	)
	return func(ctx context.Context, lo, hi int) ([]int, error) {
		if lo < 0 || hi > n || lo > hi {
			return nil, fmt.Errorf("defense: images [%d, %d) of a set of %d", lo, hi, n)
		}
		if !s.IsTransductive() {
			return s.assign(ctx, x.Batch(lo, hi))
		}
		once.Do(func() { all, err = s.assign(ctx, x) })
		if err != nil {
			return nil, err
		}
		return slices.Clone(all[lo:hi]), nil
	}
}

// assign is Assign on a batch checked by the caller.
func (s *Stratifier) assign(ctx context.Context, x *tensor.Tensor) ([]int, error) {
	codes, err := encodeCodes(ctx, s.encoder, s.pca, s.resolution, x, nil)
	if err != nil {
		return nil, err
	}
	if s.centers == nil {
		return s.vote.Vote(nil, codes)
	}
	return s.transduce(ctx, codes)
}

// transduce returns the k-means labels of codes in the clustering of the
// training codes and codes together, started from s.centers.
func (s *Stratifier) transduce(ctx context.Context, codes *tensor.Tensor) ([]int, error) {
	n, k := s.codes.Shape[0], codes.Shape[1]
	m := codes.Shape[0]
	if m == 0 {
		return []int{}, nil
	}
	union := tensor.New(n+m, k)
	copy(union.Data, s.codes.Data)
	copy(union.Data[n*k:], codes.Data)
	km, err := cluster.FitKMeansFrom(ctx, union, s.centers, kmeansOptions(s.clusters, 1, 0))
	if err != nil {
		return nil, fmt.Errorf("defense: transductive k-means: %w", err)
	}
	return km.Labels[n:], nil
}

// checkImages validates an image batch against an expected channel count
// (0: any) and returns its dimensions.
func checkImages(op string, x *tensor.Tensor, channels int) (n, c, h, w int, err error) {
	if x == nil {
		return 0, 0, 0, 0, fmt.Errorf("%s: %w", op, ErrNilInput)
	}
	n, c, h, w, err = x.NCHW()
	if err != nil {
		return 0, 0, 0, 0, fmt.Errorf("%s: %w", op, err)
	}
	if channels > 0 && c != channels {
		return 0, 0, 0, 0, &tensor.ShapeError{Op: op, Want: []int{-1, channels, -1, -1}, Got: x.Shape}
	}
	if err := x.Validate(); err != nil {
		return 0, 0, 0, 0, fmt.Errorf("%s: %w", op, err)
	}
	return n, c, h, w, nil
}

// encodeCodes downsamples, encodes and (when pca is non-nil) reduces x, a
// batch checked by the caller (checkImages), in batches of EncodeBatch,
// reporting each batch to rep (stage "encode"; rep may be nil).
func encodeCodes(ctx context.Context, enc Encoder, pca *cluster.PCA, resolution int, x *tensor.Tensor, rep progress.Reporter) (*tensor.Tensor, error) {
	rep = progress.Or(rep)
	n := x.Shape[0]
	var out *tensor.Tensor
	for start := 0; start < n; start += EncodeBatch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		end := min(start+EncodeBatch, n)
		batch := x.Batch(start, end)
		small, err := areaResize(batch, resolution, resolution)
		if err != nil {
			return nil, err
		}
		z, err := enc.Encode(ctx, small)
		if err != nil {
			return nil, fmt.Errorf("defense: encode: %w", err)
		}
		if len(z.Shape) != 2 || z.Shape[0] != end-start || z.Len() != len(z.Data) {
			return nil, &tensor.ShapeError{Op: "defense: encoder output", Want: []int{end - start, -1}, Got: z.Shape}
		}
		if pca != nil {
			if z, err = pca.Transform(nil, z); err != nil {
				return nil, fmt.Errorf("defense: latent codes do not fit the PCA: %w", err)
			}
		}
		if out == nil {
			out = tensor.New(n, z.Shape[1])
		} else if z.Shape[1] != out.Shape[1] {
			return nil, &tensor.ShapeError{Op: "defense: encoder output", Want: []int{end - start, out.Shape[1]}, Got: z.Shape}
		}
		copy(out.Data[start*z.Shape[1]:], z.Data)
		rep.Report("encode", end, n, "")
	}
	if out == nil {
		d := 0
		if pca != nil {
			d = pca.Out()
		}
		out = tensor.New(0, d)
	}
	return out, nil
}
