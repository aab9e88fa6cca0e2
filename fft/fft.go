package fft

import (
	"fmt"
	"unsafe"
)

// RealPlan2D computes 2-D real-to-complex DFTs of one fixed size. See the
// package documentation for the layout and normalization.
//
// A RealPlan2D owns scratch memory and is not safe for concurrent use; make
// one per goroutine (plans are cheap: the expensive FFTW plan underneath is
// shared and cached per size).
type RealPlan2D interface {
	// Size returns the real array's rows and columns.
	Size() (h, w int)
	// Forward stores the unnormalized DFT of src (h*w values) in dst
	// (h*(w/2+1) values) and returns dst, allocated when nil. src is not
	// modified. It panics when a length is wrong (a programming error).
	Forward(dst []complex64, src []float32) []complex64
	// Inverse stores the inverse DFT of the half spectrum src, divided by
	// h*w, in dst (h*w values) and returns dst, allocated when nil. src is
	// not modified. src must be the half spectrum of a real array
	// (Hermitian symmetric along columns 0 and w/2); for other input the
	// result depends on the implementation.
	Inverse(dst []float32, src []complex64) []float32
}

// ComplexLen returns h*(w/2+1), the length of the half spectrum of an h×w
// real array.
func ComplexLen(h, w int) int { return h * (w/2 + 1) }

// SizeError reports a transform size that is not positive.
type SizeError struct{ H, W int }

func (e *SizeError) Error() string {
	return fmt.Sprintf("fft: invalid transform size %dx%d", e.H, e.W)
}

func checkSize(h, w int) error {
	if h <= 0 || w <= 0 || h > 1<<15 || w > 1<<15 {
		return &SizeError{H: h, W: w}
	}
	return nil
}

// New returns a plan for h×w real arrays from the fastest implementation
// compiled in (FFTW in the default build, gonum under the purego tag). It
// returns a *SizeError for non-positive sizes.
func New(h, w int) (RealPlan2D, error) { return newBest(h, w) }

// Alignment is the byte alignment of the slices returned by MakeFloat32 and
// MakeComplex64. FFTW's vectorized code needs aligned arrays; plans copy
// through aligned scratch memory when given unaligned ones, which is
// correct but slower.
const Alignment = 64

// MakeFloat32 returns a zeroed slice of n float32 whose first element is
// aligned to Alignment bytes.
func MakeFloat32(n int) []float32 {
	buf := make([]float32, n+Alignment/4)
	off := int(uintptr(unsafe.Pointer(&buf[0]))%Alignment) / 4
	if off != 0 {
		off = Alignment/4 - off
	}
	return buf[off : off+n : off+n]
}

// MakeComplex64 returns a zeroed slice of n complex64 whose first element is
// aligned to Alignment bytes.
func MakeComplex64(n int) []complex64 {
	buf := make([]complex64, n+Alignment/8)
	off := int(uintptr(unsafe.Pointer(&buf[0]))%Alignment) / 8
	if off != 0 {
		off = Alignment/8 - off
	}
	return buf[off : off+n : off+n]
}

func checkLens(op string, h, w, nreal, ncplx int) {
	if nreal != h*w || ncplx != ComplexLen(h, w) {
		panic(fmt.Sprintf("fft: %s: %dx%d plan needs %d real and %d complex values, got %d and %d",
			op, h, w, h*w, ComplexLen(h, w), nreal, ncplx))
	}
}
