package dnnl

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestLayoutConvert: FromNCHW puts each element where the nChw{b}c formula
// says, pads the channels with zeros, and ToNCHW inverts it.
func TestLayoutConvert(t *testing.T) {
	cases := []struct {
		l          Layout
		n, c, h, w int
	}{
		{NCHW, 2, 3, 4, 5},
		{Blocked(4), 2, 3, 4, 5},
		{Blocked(8), 3, 16, 2, 3},
		{Blocked(8), 1, 19, 3, 3},
		{Blocked(16), 2, 17, 1, 2},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v/%dx%dx%dx%d", tc.l, tc.n, tc.c, tc.h, tc.w), func(t *testing.T) {
			n, c, h, w := tc.n, tc.c, tc.h, tc.w
			src := randSlice(rand.New(rand.NewPCG(3, 4)), n*c*h*w)
			blk := nanSlice(tc.l.Len(n, c, h, w))
			tc.l.FromNCHW(blk, src, n, c, h, w)
			b := tc.l.Block()
			if b == 0 {
				b = c
			}
			cb := (c + b - 1) / b
			if want := n * cb * b * h * w; len(blk) != want {
				t.Fatalf("Len = %d, want %d", len(blk), want)
			}
			for i := range blk {
				// Decompose i as ((n*cb + g)*h*w + pixel)*b + j.
				j, pix, g, img := i%b, i/b%(h*w), i/(b*h*w)%cb, i/(b*h*w*cb)
				ch := g*b + j
				want := float32(0)
				if ch < c {
					want = src[(img*c+ch)*h*w+pix]
				}
				if tc.l == NCHW {
					want = src[i]
				}
				if blk[i] != want {
					t.Fatalf("blocked[%d] = %g, want %g", i, blk[i], want)
				}
			}
			back := nanSlice(n * c * h * w)
			tc.l.ToNCHW(back, blk, n, c, h, w)
			for i := range back {
				if back[i] != src[i] {
					t.Fatalf("round trip [%d] = %g, want %g", i, back[i], src[i])
				}
			}
		})
	}
}

// TestForwardLayouts: a Conv with blocked src or dst layouts, a sum and a
// ReLU computes max(0, conv(x) + b + r) for the prior dst contents r, in
// the layouts asked for, against the naive reference; its backward passes
// return ErrForwardOnly.
func TestForwardLayouts(t *testing.T) {
	needDNNL(t)
	defer SetThreads(Threads())
	SetThreads(1)
	blocks := []Layout{ActivationLayout()}
	if blocks[0] != Blocked(8) {
		blocks = append(blocks, Blocked(8)) // AVX2's layout, whatever this CPU's
	}
	if blocks[0] == NCHW {
		t.Fatalf("ActivationLayout() = NCHW: oneDNN computes in no blocked layout on this CPU")
	}
	type variant struct {
		src, dst  Layout
		sum, relu bool
		alg       Algorithm
	}
	var variants []variant
	for _, b := range blocks {
		for _, f := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			variants = append(variants, variant{b, b, f[0], f[1], Direct})
		}
		variants = append(variants, variant{NCHW, b, true, true, Direct}, variant{b, NCHW, true, true, Direct},
			variant{NCHW, b, false, true, Direct}, variant{b, b, true, true, Winograd})
	}
	for ci, tc := range convCases {
		for _, v := range variants {
			name := fmt.Sprintf("%s/%v-%v/sum=%v/relu=%v/%v", tc.name, v.src, v.dst, v.sum, v.relu, v.alg)
			t.Run(name, func(t *testing.T) {
				p, cc := tc.p, getConvCase(ci)
				oh, ow := p.OutHW()
				o := ConvOptions{Algorithm: v.alg, ForwardReLU: v.relu, ForwardSum: v.sum, SrcLayout: v.src, DstLayout: v.dst}
				c, err := NewConvWith(p, o)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				rng := rand.New(rand.NewPCG(9, uint64(ci)))
				prior := randSlice(rng, p.dstLen())
				want := make([]float64, len(cc.y))
				for i, y := range cc.y {
					if v.sum {
						y += float64(prior[i])
					}
					if v.relu {
						y = math.Max(y, 0)
					}
					want[i] = y
				}
				x := make([]float32, v.src.Len(p.N, p.C, p.H, p.W))
				v.src.FromNCHW(x, cc.x, p.N, p.C, p.H, p.W)
				y := nanSlice(v.dst.Len(p.N, p.K, oh, ow))
				for range 2 { // a second call must give the same result
					if v.sum {
						v.dst.FromNCHW(y, prior, p.N, p.K, oh, ow)
					}
					if err := c.Forward(y, x, cc.w, cc.b); err != nil {
						t.Fatal(err)
					}
					got := nanSlice(p.dstLen())
					v.dst.ToNCHW(got, y, p.N, p.K, oh, ow)
					assertClose(t, "Forward", got, want, cc.yMag, 1e-4)
				}
				if err := c.Forward(y[1:], x, cc.w, cc.b); !errors.As(err, new(*LengthError)) {
					t.Errorf("Forward with a short dst: err = %v, want *LengthError", err)
				}
				forwardOnly := v.src != NCHW || v.dst != NCHW
				if err := c.BackwardData(nanSlice(p.srcLen()), cc.dy, cc.w); forwardOnly != errors.Is(err, ErrForwardOnly) {
					t.Errorf("BackwardData: err = %v (forward-only conv: %v)", err, forwardOnly)
				}
			})
		}
	}
}
