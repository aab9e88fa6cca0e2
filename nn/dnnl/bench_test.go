//go:build cgo && !purego

package dnnl

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stl-defense/stl/nn/dnnl/internal/gemmref"
)

// vggSmall lists the convolutions of the vgg-small classifier (issue 7:
// [conv3x3 32] x2, pool, [conv 64] x2, pool, [conv 128] x2) at 32 px.
var vggSmall = []struct {
	name string
	p    ConvParams
}{
	{"3to32@32", conv3x3(3, 32, 32)},
	{"32to32@32", conv3x3(32, 32, 32)},
	{"32to64@16", conv3x3(32, 64, 16)},
	{"64to64@16", conv3x3(64, 64, 16)},
	{"64to128@8", conv3x3(64, 128, 8)},
	{"128to128@8", conv3x3(128, 128, 8)},
}

const benchBatch = 128

func conv3x3(c, k, hw int) ConvParams {
	return ConvParams{N: benchBatch, C: c, H: hw, W: hw, K: k, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
}

// convKernel is what both implementations offer.
type convKernel interface {
	Forward(dst, src, weight, bias []float32) error
	BackwardData(dsrc, ddst, weight []float32) error
	BackwardWeights(dweight, dbias, src, ddst []float32) error
}

type benchData struct{ x, w, b, y, dy, dx, dw, db []float32 }

func newBenchData(p ConvParams) *benchData {
	rng := rand.New(rand.NewPCG(1, 1))
	return &benchData{
		x: randSlice(rng, p.srcLen()), w: randSlice(rng, p.weightLen()), b: randSlice(rng, p.K),
		y: make([]float32, p.dstLen()), dy: randSlice(rng, p.dstLen()),
		dx: make([]float32, p.srcLen()), dw: make([]float32, p.weightLen()), db: make([]float32, p.K),
	}
}

var passes = []struct {
	name string
	run  func(k convKernel, d *benchData) error
}{
	{"fwd", func(k convKernel, d *benchData) error { return k.Forward(d.y, d.x, d.w, d.b) }},
	{"bwd_data", func(k convKernel, d *benchData) error { return k.BackwardData(d.dx, d.dy, d.w) }},
	{"bwd_weights", func(k convKernel, d *benchData) error { return k.BackwardWeights(d.dw, d.db, d.x, d.dy) }},
	// Both backward passes, through Conv.Backward where there is one.
	{"bwd_both", func(k convKernel, d *benchData) error {
		if c, ok := k.(*Conv); ok {
			return c.Backward(d.dx, d.dw, d.db, d.x, d.dy, d.w)
		}
		if err := k.BackwardWeights(d.dw, d.db, d.x, d.dy); err != nil {
			return err
		}
		return k.BackwardData(d.dx, d.dy, d.w)
	}},
}

func passIndex(name string) int {
	for i, p := range passes {
		if p.name == name {
			return i
		}
	}
	return -1
}

type impl struct {
	name string
	make func(p ConvParams) (convKernel, func(), error)
}

var impls = []impl{
	{"dnnl", func(p ConvParams) (convKernel, func(), error) {
		c, err := NewConv(p)
		return c, func() { c.Close() }, err
	}},
	{"dnnl_plain", func(p ConvParams) (convKernel, func(), error) {
		c, err := NewConvWith(p, ConvOptions{Algorithm: Plain})
		return c, func() { c.Close() }, err
	}},
	{"dnnl_winograd", func(p ConvParams) (convKernel, func(), error) {
		c, err := NewConvWith(p, ConvOptions{Algorithm: Winograd})
		return c, func() { c.Close() }, err
	}},
	{"dnnl_shared_ws", func(p ConvParams) (convKernel, func(), error) {
		c, err := NewConvWith(p, ConvOptions{Workspace: benchWorkspace})
		return c, func() { c.Close() }, err
	}},
	{"im2col_openblas", func(p ConvParams) (convKernel, func(), error) {
		return gemmref.New(gemmref.Params(p)), func() {}, nil
	}},
}

// benchWorkspace is shared by the "dnnl_shared_ws" kernels.
var benchWorkspace = func() *Workspace {
	w, err := NewWorkspace()
	if err != nil {
		panic(err)
	}
	return w
}()

func setAllThreads(n int) {
	SetThreads(n)
	gemmref.SetThreads(n)
}

// BenchmarkConv times each pass of each vgg-small layer at batch 128 for
// oneDNN (blocked layouts with reorders, the default), oneDNN on plain
// layouts (Plain), oneDNN with Winograd allowed, and im2col + OpenBLAS, on 1 and 2
// threads. GFLOP/s counts useful work, 2*N*K*OH*OW*C*R*S per pass.
//
//	go test -run '^$' -bench Conv ./nn/dnnl
func BenchmarkConv(b *testing.B) {
	defer setAllThreads(Threads())
	for _, layer := range vggSmall {
		d := newBenchData(layer.p)
		if testing.Short() && layer.name != "32to32@32" {
			continue
		}
		for _, threads := range []int{1, 2} {
			setAllThreads(threads)
			for _, im := range impls {
				k, done, err := im.make(layer.p)
				if err != nil {
					b.Fatal(err)
				}
				for _, pass := range passes {
					b.Run(fmt.Sprintf("%s/%s/%s/t%d", layer.name, pass.name, im.name, threads), func(b *testing.B) {
						b.ReportAllocs()
						if err := pass.run(k, d); err != nil { // warm-up: JIT, first touch
							b.Fatal(err)
						}
						b.ResetTimer()
						for i := 0; i < b.N; i++ {
							if err := pass.run(k, d); err != nil {
								b.Fatal(err)
							}
						}
						flops := layer.p.FLOPs()
						if pass.name == "bwd_both" {
							flops *= 2
						}
						b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
						b.StopTimer()
						if c, ok := k.(*Conv); ok && pass.name != "bwd_both" {
							// Share of the time in reorders from/to plain NCHW.
							st := c.stageTimes()[passIndex(pass.name)]
							b.ReportMetric(100*float64(st[0]+st[2])/float64(st[0]+st[1]+st[2]), "%reorder")
						}
					})
				}
				done()
			}
		}
	}
}

// BenchmarkVGGSmallConvTrain runs the three passes of all six vgg-small
// convolutions (forward, then Conv.Backward) (one training step's convolution work, the first layer's
// BackwardData included) and reports images/s and GFLOP/s; the rest of a
// network (batch norm, ReLU, pooling, dense) comes on top.
func BenchmarkVGGSmallConvTrain(b *testing.B) {
	defer setAllThreads(Threads())
	for _, threads := range []int{1, 2} {
		for _, im := range impls {
			b.Run(fmt.Sprintf("%s/t%d", im.name, threads), func(b *testing.B) {
				setAllThreads(threads)
				var ks []convKernel
				var ds []*benchData
				flops, wsBytes := 0.0, 0
				for _, layer := range vggSmall {
					k, done, err := im.make(layer.p)
					if err != nil {
						b.Fatal(err)
					}
					defer done()
					if c, ok := k.(*Conv); ok {
						if im.name == "dnnl_shared_ws" {
							wsBytes = c.workspaceBytes()
						} else {
							wsBytes += c.workspaceBytes()
						}
					}
					ks = append(ks, k)
					ds = append(ds, newBenchData(layer.p))
					flops += 3 * layer.p.FLOPs()
				}
				step := func() {
					for i, k := range ks {
						for _, pass := range []int{0, 3} { // fwd, bwd_both
							if err := passes[pass].run(k, ds[i]); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
				step()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					step()
				}
				s := b.Elapsed().Seconds()
				b.ReportMetric(float64(b.N*benchBatch)/s, "img/s")
				b.ReportMetric(flops*float64(b.N)/s/1e9, "GFLOP/s")
				b.ReportMetric(float64(wsBytes)/(1<<20), "MB-workspace")
			})
		}
	}
}

// The benchmark's baseline must compute the same thing.
func TestGemmRefConformance(t *testing.T) {
	for ci, tc := range convCases {
		t.Run(tc.name, func(t *testing.T) {
			p, cc := tc.p, getConvCase(ci)
			g := gemmref.New(gemmref.Params(p))
			y, dx, dw, db := nanSlice(p.dstLen()), nanSlice(p.srcLen()), nanSlice(p.weightLen()), nanSlice(p.K)
			if err := g.Forward(y, cc.x, cc.w, cc.b); err != nil {
				t.Fatal(err)
			}
			if err := g.BackwardData(dx, cc.dy, cc.w); err != nil {
				t.Fatal(err)
			}
			if err := g.BackwardWeights(dw, db, cc.x, cc.dy); err != nil {
				t.Fatal(err)
			}
			assertClose(t, "Forward", y, cc.y, cc.yMag, relTol)
			assertClose(t, "BackwardData", dx, cc.dx, cc.dxMag, relTol)
			assertClose(t, "dweight", dw, cc.dw, cc.dwMag, relTol)
			assertClose(t, "dbias", db, cc.db, cc.dbMag, relTol)
		})
	}
}
