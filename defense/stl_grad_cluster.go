package defense

import (
	"context"
	"fmt"

	"github.com/stl-defense/stl/tensor"
)

// ClusterGradient says how STL (cluster)'s backward pass treats the
// cluster choice, the kNN vote of the image's latent code (section 3.4):
// a piecewise-constant function of the image, with zero derivative almost
// everywhere, that an attacker may still want to account for.
//
// A third treatment is not a backward pass but a set of targets:
// StratifiedSTL.ClusterTransforms returns the projection with each
// cluster's dictionary as a transform of its own; attacking each (with
// any route) and keeping, per image, the result that does most harm to
// the real STL (cluster) is the "attack every cluster and keep the worst"
// evaluation.
type ClusterGradient string

const (
	// ClusterVote (the default, also "") differentiates the projection with
	// the dictionary the vote picks for x: the exact derivative of
	// STL (cluster) wherever the vote does not change.
	ClusterVote ClusterGradient = "vote"
	// ClusterEOT is an expectation over the vote's neighbours, in the
	// spirit of EOT (Athalye et al., ICML 2018): the sum over clusters k
	// of w_k(x) (dT_k/dx)^T gy, w_k the fraction of the K nearest
	// training codes of x lying in cluster k and T_k the projection with
	// cluster k's dictionary: the gradient of the expected projection when
	// the cluster is drawn as one of the neighbours' clusters, so an
	// attack also pushes images near a cluster boundary through the
	// dictionaries they might be routed to. It costs one VJP per cluster
	// among the neighbours.
	ClusterEOT ClusterGradient = "eot"
)

// shares returns the (N, clusters) fractions of the K nearest training
// codes of every image of x (checked by the caller) in each cluster.
func (s *Stratifier) shares(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	codes, err := encodeCodes(ctx, s.encoder, s.pca, s.resolution, x, nil)
	if err != nil {
		return nil, err
	}
	return s.vote.Shares(codes)
}

// Shares returns, for every image of x, an (N, C, H, W) batch, the
// fraction of its K nearest training codes in each cluster: an
// (N, Clusters()) tensor whose rows sum to 1 (Assign picks the largest,
// ties going to the cluster of the nearest code).
func (s *Stratifier) Shares(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if _, _, _, _, err := checkImages("defense.Stratifier.Shares", x, s.channels); err != nil {
		return nil, err
	}
	return s.shares(ctx, x)
}

// ClusterSTL is STL (cluster) with the cluster choice taken away: every
// image is projected with the dictionary of one cluster. It is the
// transform an attack targets to go through that cluster's dictionary
// (see ClusterGradient); GradientRoute differentiates it as an STL.
type ClusterSTL struct {
	STL
	cluster int
}

// Name returns "STL (cluster k)".
func (t *ClusterSTL) Name() string { return fmt.Sprintf("STL (cluster %d)", t.cluster) }

// Cluster returns the index of the cluster whose dictionary t uses.
func (t *ClusterSTL) Cluster() int { return t.cluster }

// ClusterTransforms returns one ClusterSTL per cluster, in cluster order,
// sharing t's projectors (and its image checks).
func (t *StratifiedSTL) ClusterTransforms() []*ClusterSTL {
	out := make([]*ClusterSTL, len(t.projs))
	for k, p := range t.projs {
		out[k] = &ClusterSTL{STL: STL{proj: p, spec: t.spec}, cluster: k}
	}
	return out
}

var _ Transform = (*ClusterSTL)(nil)
