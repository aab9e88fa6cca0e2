package fft

import (
	"math"
	"math/bits"
)

// radix2 is an in-place iterative radix-2 complex FFT of one power-of-two
// length, in float64, the pure-Go path for power-of-two sizes (gonum's
// mixed-radix FFT serves the others). Unnormalized in both directions.
type radix2 struct {
	n   int
	tw  []complex128 // exp(-2πik/n), k < n/2
	rev []int32      // bit-reversal permutation
}

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

func newRadix2(n int) *radix2 {
	r := &radix2{n: n, tw: make([]complex128, n/2), rev: make([]int32, n)}
	for k := range r.tw {
		s, c := math.Sincos(-2 * math.Pi * float64(k) / float64(n))
		r.tw[k] = complex(c, s)
	}
	shift := 64 - uint(bits.TrailingZeros(uint(n)))
	for i := range r.rev {
		if n > 1 {
			r.rev[i] = int32(bits.Reverse64(uint64(i)) >> shift)
		}
	}
	return r
}

// transform replaces x (length n) by its DFT, or by the unnormalized
// inverse DFT when inverse is set.
func (r *radix2) transform(x []complex128, inverse bool) {
	n := r.n
	x = x[:n]
	for i, j := range r.rev {
		if int(j) > i {
			x[i], x[j] = x[j], x[i]
		}
	}
	for size := 2; size <= n; size <<= 1 {
		half := size >> 1
		step := n / size
		for start := 0; start < n; start += size {
			a := x[start : start+half]
			b := x[start+half : start+size]
			for k := range a {
				w := r.tw[k*step]
				if inverse {
					w = complex(real(w), -imag(w))
				}
				t := b[k] * w
				b[k] = a[k] - t
				a[k] += t
			}
		}
	}
}

// pow2Plan is the 2-D real transform for power-of-two h and w >= 2: rows
// two at a time as the real and imaginary parts of one complex FFT, then
// complex FFTs down the w/2+1 columns.
type pow2Plan struct {
	h, w, wc int
	row, col *radix2
	z        []complex128 // one row
	c        []complex128 // one column
	half     []complex128 // h×wc working spectrum
}

func newPow2Plan(h, w int) *pow2Plan {
	wc := w/2 + 1
	return &pow2Plan{h: h, w: w, wc: wc, row: newRadix2(w), col: newRadix2(h),
		z: make([]complex128, w), c: make([]complex128, h), half: make([]complex128, h*wc)}
}

func (p *pow2Plan) forward(dst []complex64, src []float32) {
	h, w, wc := p.h, p.w, p.wc
	for y := 0; y < h; y += 2 {
		r0 := src[y*w : (y+1)*w]
		if y+1 < h {
			r1 := src[(y+1)*w : (y+2)*w]
			for x := range p.z {
				p.z[x] = complex(float64(r0[x]), float64(r1[x]))
			}
		} else {
			for x := range p.z {
				p.z[x] = complex(float64(r0[x]), 0)
			}
		}
		p.row.transform(p.z, false)
		// Z = A + iB with A, B the spectra of the two real rows:
		// A[l] = (Z[l] + conj(Z[-l]))/2, B[l] = (Z[l] - conj(Z[-l]))/(2i).
		for l := 0; l < wc; l++ {
			zl := p.z[l]
			zm := p.z[(w-l)&(w-1)]
			zm = complex(real(zm), -imag(zm))
			p.half[y*wc+l] = (zl + zm) * 0.5
			if y+1 < h {
				d := zl - zm
				p.half[(y+1)*wc+l] = complex(imag(d), -real(d)) * 0.5
			}
		}
	}
	for l := 0; l < wc; l++ {
		for k := 0; k < h; k++ {
			p.c[k] = p.half[k*wc+l]
		}
		p.col.transform(p.c, false)
		for k := 0; k < h; k++ {
			dst[k*wc+l] = complex64(p.c[k])
		}
	}
}

func (p *pow2Plan) inverse(dst []float32, src []complex64, scale float64) {
	h, w, wc := p.h, p.w, p.wc
	for l := 0; l < wc; l++ {
		for k := 0; k < h; k++ {
			p.c[k] = complex128(src[k*wc+l])
		}
		p.col.transform(p.c, true)
		for k := 0; k < h; k++ {
			p.half[k*wc+l] = p.c[k]
		}
	}
	for y := 0; y < h; y += 2 {
		a := p.half[y*wc : (y+1)*wc]
		var b []complex128
		if y+1 < h {
			b = p.half[(y+1)*wc : (y+2)*wc]
		}
		// Z[l] = A[l] + i B[l] over the full length, from the half spectra
		// by Hermitian symmetry; then both rows come out of one inverse.
		for l := 0; l < w; l++ {
			var al, bl complex128
			if l < wc {
				al = a[l]
				if b != nil {
					bl = b[l]
				}
			} else {
				al = a[w-l]
				al = complex(real(al), -imag(al))
				if b != nil {
					bl = b[w-l]
					bl = complex(real(bl), -imag(bl))
				}
			}
			p.z[l] = al + complex(-imag(bl), real(bl))
		}
		p.row.transform(p.z, true)
		r0 := dst[y*w : (y+1)*w]
		for x, v := range p.z {
			r0[x] = float32(real(v) * scale)
		}
		if b != nil {
			r1 := dst[(y+1)*w : (y+2)*w]
			for x, v := range p.z {
				r1[x] = float32(imag(v) * scale)
			}
		}
	}
}
