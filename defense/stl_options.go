package defense

import (
	"fmt"
	"math"
	"strings"
)

// The output mappings: how the STL turns an image's lowpass + D x (section
// 3.2; values may leave [0, 1]) into the image it returns
// (ApplyOptions.Output; "" means OutputClip).
const (
	// OutputClip clips every value to [0, 1]: this project's default.
	OutputClip = "clip"
	// OutputMax divides every value by the image's maximum over all its
	// pixels and channels, as the released code does (recons_data.py of
	// the authors' AdvDefense_CSC: cv2.imwrite(path, 255*imgr/imgr.max())).
	// Nothing is clipped above: the maximum maps to exactly 1. Values below
	// 0, which lowpass + D x can take at dark pixels, are set to 0: the
	// release never handed them to a classifier, because its conversion to
	// 8 bits (OpenCV's saturate_cast) sets them to 0 when it saves the
	// file. An image whose maximum is <= 0 maps to all zeros (the release
	// would divide by a non-positive number).
	OutputMax = "max"
)

// The cluster assignments: how STL (cluster) assigns an image to a cluster
// (ApplyOptions.Assign; "" means AssignKNN).
const (
	// AssignKNN gives an image the cluster voted by its k nearest training
	// codes (section 3.4; TrainOptions.KNN): this project's default. Each
	// image's cluster depends on that image only.
	AssignKNN = "knn"
	// AssignTransductive gives the images of a set the k-means labels of a
	// clustering fitted on the training codes and the set's codes
	// together, as the released code does (dae/cluster.py of
	// AdvDefense_CSC fits k-means on the train and test codes
	// concatenated and reads the test images' labels from it).
	//
	// It is transductive: an image's cluster depends on the other images
	// of its set, which the clustering sees. Here the set is what one call
	// assigns at once: Stratifier.AssignSet, or the batch of a plain
	// Transform.Apply (so a white-box attack that calls Apply on a batch
	// of attacked images clusters them with that batch); `stl run` and
	// `stl defend` pass each whole set (the clean test set, each attacked
	// set, the training set) through SetTransform, so batching does not
	// change the result. An attacked image is clustered with the attacked
	// set it belongs to, not with the clean test set.
	//
	// The clustering is Lloyd's k-means on the union of the training codes
	// (after PCA) and the set's codes, started from the centres of the
	// defense's own k-means (cluster.FitKMeansFrom), so that cluster k
	// keeps the dictionary learned on cluster k; it draws no random
	// numbers, so it is deterministic for a given defense (itself a
	// function of the seed) and set. The release instead ran k-means++
	// (10 restarts) on the union before learning its dictionaries, and
	// fitted its PCA on the test codes; neither can be done by a defense
	// trained before it sees the images it defends.
	AssignTransductive = "transductive"
)

// ApplyOptions are how a trained defense's transforms map their output and
// assign clusters. The zero value is this project's behaviour (clip to
// [0, 1], no quantization, kNN vote); ReleaseApplyOptions gives the
// released code's. They are chosen at training (TrainOptions), recorded in
// the defense's manifest, and used by every transform of the defense (`stl
// defend`, `stl run`). The JSON fields are omitted at their zero values, so
// settings that embed ApplyOptions encode as they did before it existed.
type ApplyOptions struct {
	// Output is the output mapping ("" or OutputClip: clip to [0, 1];
	// OutputMax: per-image rescaling to the maximum).
	Output string `json:"output_mapping,omitempty" yaml:"output_mapping"`
	// Quantize8 rounds every output value v, after the mapping, to
	// round(255 v) / 255, clamped to [0, 1], halves to even (OpenCV's
	// saturate_cast, as the release saved its projections as 8-bit PNG
	// files and classified those). Default false.
	Quantize8 bool `json:"quantize_8bit,omitempty" yaml:"quantize_8bit"`
	// Assign is the cluster assignment of STL (cluster) ("" or AssignKNN:
	// kNN vote; AssignTransductive: k-means labels of the training codes
	// and the set together). The universal STL ignores it.
	Assign string `json:"cluster_assignment,omitempty" yaml:"cluster_assignment"`
}

// ReleaseApplyOptions returns the choices of the released code: rescaling
// to each image's maximum, 8-bit quantization, transductive k-means labels.
// (The release's dictionary constraint, unit norm jointly over the channels
// and zero mean per channel, is csc.Learn's only one.)
func ReleaseApplyOptions() ApplyOptions {
	return ApplyOptions{Output: OutputMax, Quantize8: true, Assign: AssignTransductive}
}

// OutputMappings and ClusterAssignments list the accepted names.
var (
	OutputMappings     = []string{OutputClip, OutputMax}
	ClusterAssignments = []string{AssignKNN, AssignTransductive}
)

// Validate returns a *TrainOptionError naming an unknown mapping or
// assignment.
func (o ApplyOptions) Validate() error {
	switch o.Output {
	case "", OutputClip, OutputMax:
	default:
		return &TrainOptionError{"Output", fmt.Sprintf("%q", o.Output), "want one of " + strings.Join(OutputMappings, ", ")}
	}
	switch o.Assign {
	case "", AssignKNN, AssignTransductive:
	default:
		return &TrainOptionError{"Assign", fmt.Sprintf("%q", o.Assign), "want one of " + strings.Join(ClusterAssignments, ", ")}
	}
	return nil
}

// transductive reports whether STL (cluster) assigns clusters
// transductively.
func (o ApplyOptions) transductive() bool { return o.Assign == AssignTransductive }

// Describe states the options in words, for reports: e.g. "output clipped
// to [0, 1]; clusters by kNN vote".
func (o ApplyOptions) Describe() string {
	out := "output clipped to [0, 1]"
	if o.Output == OutputMax {
		out = "output divided by each image's maximum (negative values set to 0; the released code's)"
	}
	if o.Quantize8 {
		out += ", rounded to 8 bits (as the release saved it)"
	}
	as := "STL (cluster) assigns clusters by the kNN vote of the training codes"
	if o.transductive() {
		as = "STL (cluster) assigns clusters transductively: k-means labels of the training codes and each set's codes together (it sees the test images; the released code's)"
	}
	return out + "; " + as
}

// MapOutput maps one image's lowpass + D x, img (all its channels), in
// place to the STL's output under o.Output and o.Quantize8. It is the one
// definition of the output mapping; its derivative, for those who
// differentiate the STL, is: OutputClip 1 where 0 < v < 1 and 0 elsewhere;
// OutputMax, with m = max(img) > 0 at index a, d(v_i/m) = dv_i/m -
// v_i dv_a/m² where v_i > 0 and 0 where v_i <= 0; the quantization is
// piecewise constant (BPDA takes it as the identity).
func (o ApplyOptions) MapOutput(img []float32) {
	switch o.Output {
	case OutputMax:
		m := float32(math.Inf(-1))
		for _, v := range img {
			m = max(m, v)
		}
		if !(m > 0) {
			clear(img)
			break
		}
		for i, v := range img {
			if v <= 0 {
				img[i] = 0
			} else {
				img[i] = float32(float64(v) / float64(m)) // <= 1: division is monotone
			}
		}
	default:
		for i, v := range img {
			if v <= 0 {
				img[i] = 0 // also -0
			} else if v > 1 {
				img[i] = 1
			}
		}
	}
	if o.Quantize8 {
		for i, v := range img {
			img[i] = float32(math.RoundToEven(255*float64(v))) / 255
		}
	}
}

// mapImages applies MapOutput to every image of a batch of images of per
// values each.
func (o ApplyOptions) mapImages(data []float32, per int) {
	for i := 0; i+per <= len(data); i += per {
		o.MapOutput(data[i : i+per])
	}
}

// outputGrad is the derivative of MapOutput for csc.GradOptions.Output:
// y is an image's lowpass + D x as the projector returns it. The
// quantization is taken as the identity (BPDA).
type outputGrad struct{ o ApplyOptions }

// maxOf returns the index and value of y's largest value.
func maxOf(y []float32) (int, float32) {
	a := 0
	for i, v := range y {
		if v > y[a] {
			a = i
		}
	}
	return a, y[a]
}

// VJP overwrites g with (dMapOutput/dy)^T g.
func (d outputGrad) VJP(y, g []float32) {
	if d.o.Output != OutputMax {
		for i, v := range y {
			if !(v >= 0 && v <= 1) {
				g[i] = 0
			}
		}
		return
	}
	a, m := maxOf(y)
	if !(m > 0) {
		clear(g)
		return
	}
	var s float64
	for i, v := range y {
		if v > 0 {
			s += float64(g[i]) * float64(v)
			g[i] = float32(float64(g[i]) / float64(m))
		} else {
			g[i] = 0
		}
	}
	g[a] -= float32(s / (float64(m) * float64(m)))
}

// JVP overwrites g with (dMapOutput/dy) g.
func (d outputGrad) JVP(y, g []float32) {
	if d.o.Output != OutputMax {
		d.VJP(y, g) // diagonal
		return
	}
	a, m := maxOf(y)
	if !(m > 0) {
		clear(g)
		return
	}
	ta := float64(g[a])
	for i, v := range y {
		if v > 0 {
			g[i] = float32(float64(g[i])/float64(m) - float64(v)*ta/(float64(m)*float64(m)))
		} else {
			g[i] = 0
		}
	}
}
