package dnnl

import "fmt"

// BatchNormParams describes batch normalization (Ioffe and Szegedy, 2015)
// of N images of C channels and H x W pixels, per channel over N, H and W:
//
//	y = gamma * (x - mean) / sqrt(variance + Epsilon) + beta
//
// with the batch's mean and biased variance (divided by N*H*W) in training
// and given (running) statistics in inference.
type BatchNormParams struct {
	N, C, H, W int
	// Epsilon keeps the division finite; PyTorch's default is 1e-5.
	Epsilon float32
	// FuseReLU applies max(0, y) to the output in the same pass. Backward
	// then takes the gradient with respect to the ReLU's output and uses
	// which outputs of the latest ForwardTraining were positive. Measured
	// with oneDNN 2.6 on NCHW (its "ncsp" implementation) the fused passes
	// are about 3x slower than the plain ones (9 ms against 2.7 ms forward
	// for 128 x 128 x 8 x 8, one thread), so a separate ReLU is faster; the
	// option is kept for other oneDNN versions and for comparison.
	FuseReLU bool
}

// DefaultBatchNormEpsilon is PyTorch's default Epsilon.
const DefaultBatchNormEpsilon = 1e-5

// Validate returns a *ParamError when a size is not positive, Epsilon is
// negative or not finite, or the array is too large to index.
func (p BatchNormParams) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"N", p.N}, {"C", p.C}, {"H", p.H}, {"W", p.W}} {
		if f.v <= 0 {
			return &ParamError{Field: f.name, Value: f.v, Reason: "must be positive"}
		}
	}
	if !(p.Epsilon >= 0 && p.Epsilon < 1e30) {
		return &ParamError{Field: "Epsilon", Value: 0, Reason: fmt.Sprintf("%g must be finite and not negative", p.Epsilon)}
	}
	if _, ok := prod(p.N, p.C, p.H, p.W); !ok {
		return &ParamError{Field: "shape", Reason: "more than 2^31-1 elements"}
	}
	return nil
}

func (p BatchNormParams) dataLen() int { return p.N * p.C * p.H * p.W }

// PoolAlgorithm is the reduction of a pooling window.
type PoolAlgorithm int

const (
	// MaxPool takes the window's maximum; the gradient goes to the
	// (first) maximal input.
	MaxPool PoolAlgorithm = iota
	// AvgPool takes the window's mean, dividing by R*S even where the window
	// covers padding (PyTorch's default, count_include_pad=True).
	AvgPool
)

// PoolParams describes 2-D pooling of N images of C channels and H x W
// pixels with R x S windows, strides StrideH, StrideW and padding PadH,
// PadW on each side.
type PoolParams struct {
	N, C, H, W       int
	R, S             int // window height and width
	StrideH, StrideW int
	PadH, PadW       int
	Algorithm        PoolAlgorithm
}

// OutHW returns the output height and width, (H + 2*PadH - R)/StrideH + 1
// and likewise (floor division, as ConvParams.OutHW).
func (p PoolParams) OutHW() (oh, ow int) {
	return ConvParams{H: p.H, W: p.W, R: p.R, S: p.S, StrideH: p.StrideH, StrideW: p.StrideW, PadH: p.PadH, PadW: p.PadW}.OutHW()
}

// Validate returns a *ParamError under the rules of ConvParams.Validate
// (with R, S the window) or for an unknown Algorithm.
func (p PoolParams) Validate() error {
	if p.Algorithm != MaxPool && p.Algorithm != AvgPool {
		return &ParamError{Field: "Algorithm", Value: int(p.Algorithm), Reason: "unknown pooling algorithm"}
	}
	return ConvParams{N: p.N, C: p.C, H: p.H, W: p.W, K: 1, R: p.R, S: p.S, StrideH: p.StrideH, StrideW: p.StrideW, PadH: p.PadH, PadW: p.PadW}.Validate()
}

func (p PoolParams) srcLen() int { return p.N * p.C * p.H * p.W }
func (p PoolParams) dstLen() int {
	oh, ow := p.OutHW()
	return p.N * p.C * oh * ow
}

func (p BatchNormParams) checkTraining(dst, mean, variance, src, gamma, beta []float32) error {
	n := p.dataLen()
	return checkLens("BatchNorm.ForwardTraining", arg{"dst", len(dst), n, false}, arg{"mean", len(mean), p.C, false},
		arg{"variance", len(variance), p.C, false}, arg{"src", len(src), n, false},
		arg{"gamma", len(gamma), p.C, false}, arg{"beta", len(beta), p.C, false})
}

func (p BatchNormParams) checkInference(dst, src, mean, variance, gamma, beta []float32) error {
	n := p.dataLen()
	return checkLens("BatchNorm.ForwardInference", arg{"dst", len(dst), n, false}, arg{"src", len(src), n, false},
		arg{"mean", len(mean), p.C, false}, arg{"variance", len(variance), p.C, false},
		arg{"gamma", len(gamma), p.C, false}, arg{"beta", len(beta), p.C, false})
}

func (p BatchNormParams) checkBackward(dsrc, dgamma, dbeta, src, ddst, mean, variance, gamma []float32) error {
	n := p.dataLen()
	return checkLens("BatchNorm.Backward", arg{"dsrc", len(dsrc), n, false},
		arg{"dgamma", len(dgamma), p.C, dgamma == nil}, arg{"dbeta", len(dbeta), p.C, dbeta == nil},
		arg{"src", len(src), n, false}, arg{"ddst", len(ddst), n, false},
		arg{"mean", len(mean), p.C, false}, arg{"variance", len(variance), p.C, false},
		arg{"gamma", len(gamma), p.C, false})
}

func (p PoolParams) checkForward(dst, src []float32) error {
	return checkLens("Pool.Forward", arg{"dst", len(dst), p.dstLen(), false}, arg{"src", len(src), p.srcLen(), false})
}

func (p PoolParams) checkBackward(dsrc, ddst []float32) error {
	return checkLens("Pool.Backward", arg{"dsrc", len(dsrc), p.srcLen(), false}, arg{"ddst", len(ddst), p.dstLen(), false})
}
